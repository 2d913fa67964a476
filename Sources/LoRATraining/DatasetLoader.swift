import Foundation
import LoRAFormats

/// Reads JSON Lines datasets into tokenized examples with exact loss masks.
public enum DatasetLoader {
  /// Loads a JSON Lines file: one JSON object per non-blank line, in one of these formats
  /// (`options.format`, or told per line from the keys when `.auto`):
  ///
  /// - `{"text": "..."}`: every token trained, then EOS (trained) when `addEOS`.
  /// - `{"prompt": "...", "completion": "..."}`: prompt and completion tokenized separately
  ///   and concatenated, then EOS when `addEOS`; the completion and EOS are trained (the
  ///   prompt too when `trainOnPrompt`).
  /// - `{"messages": [{"role": "system" | "user" | "assistant", "content": "..."}]}`:
  ///   rendered as ChatML (`ChatTemplate.chatML`) and tokenized piece by piece at the edges of
  ///   the assistant turns, so that exactly each assistant content and its "<|im_end|>" are
  ///   trained (everything when `trainOnPrompt`). At least one assistant message is needed.
  /// - `{"input_ids": [...], "labels": [...]}`: pre-tokenized ids, all trained, or as the
  ///   optional Hugging Face labels say (same length; -100 not trained, otherwise the id).
  ///
  /// Every format also accepts an "id" and a "meta" key, which are ignored; any other key is
  /// an error. Special tokens written in the text (e.g. "<|im_end|>") are parsed, as Hugging
  /// Face does. A tokenizer that adds a BOS puts it once at the start of each example,
  /// untrained. The first token of every example is never trained (nothing predicts it).
  ///
  /// Examples longer than `maxSequenceLength` keep their first `maxSequenceLength` tokens and
  /// are counted in `stats.truncated`; one left with no trained token is dropped (and still
  /// counted there). A line whose example has no trained token to begin with is a bad line.
  /// With `pack`, the examples are then concatenated in file order and cut into sequences of
  /// exactly `maxSequenceLength` tokens (the last may be shorter; one with no trained token is
  /// dropped); flags are kept, except that the first token of each sequence is not trained.
  /// Packed examples attend to each other.
  ///
  /// - Throws: `DataError.unreadable` for a missing or unreadable file;
  ///   `DataError.badLine` (1-based line number) for a line that is not valid JSON, not an
  ///   object, has an unknown or missing key, a value of the wrong type, an unknown role, no
  ///   assistant message, ids outside the vocabulary or labels that do not match them, or
  ///   nothing to train on, unless `skipBadLines`; `DataError.empty` when no example is left;
  ///   `DataError.invalidOption` for `maxSequenceLength < 2`, or when `addEOS` is needed and
  ///   the tokenizer has no EOS.
  public static func load(path: String, tokenizer: Tokenizer, options: DatasetOptions) throws(DataError)
    -> Dataset
  {
    try options.validate()
    let reader = LineReader(tokenizer: tokenizer, options: options)
    var truncated = 0
    let (read, lines, skippedLines) = try readLines(path, skipBadLines: options.skipBadLines) {
      line throws(LineError) -> Example? in
      var example = try reader.example(from: line)
      if example.tokens.count > options.maxSequenceLength {
        truncated += 1
        example.tokens.removeSubrange(options.maxSequenceLength...)
        example.trained.removeSubrange(options.maxSequenceLength...)
        if !example.trained.contains(true) { return nil }
      }
      return example
    }
    guard !read.isEmpty else {
      throw .empty(
        file: path,
        message: "no examples (\(lines) lines read, \(skippedLines) skipped, "
          + "\(truncated) truncated)")
    }
    let exampleCount = read.count
    var examples = read
    if options.pack { examples = pack(examples, length: options.maxSequenceLength) }
    let stats = DatasetStats(
      lines: lines, examples: exampleCount, skippedLines: skippedLines, truncated: truncated,
      tokens: examples.reduce(0) { $0 + $1.tokens.count },
      trainedTokens: examples.reduce(0) { $0 + $1.trainedCount })
    return Dataset(examples: examples, stats: stats)
  }

  /// Every non-blank line of the JSON Lines file at `path` (a UTF-8 BOM skipped) through
  /// `parse`: its items (nil: dropped), the lines read and the bad lines skipped.
  /// - Throws: `DataError.badLine` naming the 1-based line, unless `skipBadLines`;
  ///   `invalidOption` for an option that cannot work; `unreadable`.
  static func readLines<Item>(
    _ path: String, skipBadLines: Bool, parse: (ArraySlice<UInt8>) throws(LineError) -> Item?
  ) throws(DataError) -> (items: [Item], lines: Int, skipped: Int) {
    let bytes = try readFile(path)
    var items: [Item] = []
    var lines = 0
    var skipped = 0
    var lineNumber = 0
    var start = 0
    while start <= bytes.count {
      lineNumber += 1
      let end = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) ?? bytes.count
      defer { start = end + 1 }
      var line = bytes[start..<end]
      if lineNumber == 1 && line.starts(with: [0xEF, 0xBB, 0xBF]) { line = line.dropFirst(3) }
      guard line.contains(where: { !isJSONWhitespace($0) }) else { continue }
      lines += 1
      do throws(LineError) {
        if let item = try parse(line) { items.append(item) }
      } catch {
        switch error {
        case .bad(let message):
          if skipBadLines {
            skipped += 1
            continue
          }
          throw .badLine(file: path, line: lineNumber, message: message)
        case .option(let message):
          throw .invalidOption(message)
        }
      }
    }
    return (items, lines, skipped)
  }

  /// Concatenates examples and cuts them into sequences of `length` tokens (the last may be
  /// shorter), untraining each sequence's first token and dropping sequences with no target.
  static func pack(_ examples: [Example], length: Int) -> [Example] {
    var packed: [Example] = []
    var tokens: [Int32] = []
    var trained: [Bool] = []
    tokens.reserveCapacity(length)
    trained.reserveCapacity(length)
    func flush() {
      let sequence = Example(tokens: tokens, trained: trained)
      if sequence.trainedCount > 0 { packed.append(sequence) }
      tokens.removeAll(keepingCapacity: true)
      trained.removeAll(keepingCapacity: true)
    }
    for example in examples {
      var position = 0
      while position < example.tokens.count {
        let take = min(length - tokens.count, example.tokens.count - position)
        tokens += example.tokens[position..<(position + take)]
        trained += example.trained[position..<(position + take)]
        position += take
        if tokens.count == length { flush() }
      }
    }
    if !tokens.isEmpty { flush() }
    return packed
  }

  /// The bytes of the file at `path`.
  static func readFile(_ path: String) throws(DataError) -> [UInt8] {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
      throw .unreadable(file: path, reason: "no such file")
    }
    guard !isDirectory.boolValue else { throw .unreadable(file: path, reason: "is a directory") }
    do {
      return [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    } catch {
      throw .unreadable(file: path, reason: error.localizedDescription)
    }
  }

  static func isJSONWhitespace(_ byte: UInt8) -> Bool {
    byte == 0x20 || byte == 0x09 || byte == 0x0D || byte == 0x0A
  }
}
