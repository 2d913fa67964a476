import LoRAFormats

/// Preference pairs read from a JSON Lines file, and how they were read.
public struct PreferenceDataset: Sendable {
  public var pairs: [PreferencePair]
  /// `examples` counts pairs; `tokens` and `trainedTokens` both responses of every pair.
  public var stats: DatasetStats
}

/// Reads DPO's preference data: JSON Lines of `{"prompt", "chosen", "rejected"}` in TRL's
/// format (`LineReader.preferencePair`).
public enum PreferenceLoader {
  /// Loads the pairs of the file at `path`. A response longer than `maxSequenceLength` with
  /// its prompt keeps the first `maxSequenceLength` tokens (counted in `stats.truncated`);
  /// a pair whose prompt leaves one of its responses no token is a bad line.
  /// `format`, `pack` and `trainOnPrompt` do not apply (only responses train).
  /// - Throws: `DataError.badLine` naming the line (invalid JSON, a missing or unknown key, a
  ///   value of the wrong type, identical responses, a prompt that fills the context) unless
  ///   `skipBadLines`; `empty` when no pair is left; `unreadable`; `invalidOption`.
  public static func load(path: String, tokenizer: Tokenizer, options: DatasetOptions) throws(DataError)
    -> PreferenceDataset
  {
    try options.validate()
    let reader = LineReader(tokenizer: tokenizer, options: options)
    let limit = options.maxSequenceLength
    var truncated = 0
    let (pairs, lines, skipped) = try DatasetLoader.readLines(path, skipBadLines: options.skipBadLines) {
      line throws(LineError) -> PreferencePair? in
      var pair = try reader.preferencePair(from: line)
      guard pair.chosen.tokens.count > limit || pair.rejected.tokens.count > limit else { return pair }
      truncated += 1
      for key in [\PreferencePair.chosen, \PreferencePair.rejected]
      where pair[keyPath: key].tokens.count > limit {
        pair[keyPath: key].tokens.removeSubrange(limit...)
        pair[keyPath: key].trained.removeSubrange(limit...)
        guard pair[keyPath: key].trainedCount > 0 else {
          throw .bad(
            "the prompt fills max_seq_len (\(limit) tokens): no token of the "
              + "\(key == \PreferencePair.chosen ? "chosen" : "rejected") response remains")
        }
      }
      return pair
    }
    guard !pairs.isEmpty else {
      throw .empty(
        file: path,
        message: "no preference pairs (\(lines) lines read, \(skipped) skipped, \(truncated) truncated)")
    }
    let examples = pairs.flatMap { [$0.chosen, $0.rejected] }
    let stats = DatasetStats(
      lines: lines, examples: pairs.count, skippedLines: skipped, truncated: truncated,
      tokens: examples.reduce(0) { $0 + $1.tokens.count },
      trainedTokens: examples.reduce(0) { $0 + $1.trainedCount })
    return PreferenceDataset(pairs: pairs, stats: stats)
  }
}
