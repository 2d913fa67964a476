/// What loading a dataset found.
public struct DatasetStats: Sendable, Codable, Equatable {
  /// Non-blank lines read.
  public var lines: Int
  /// Examples kept from those lines (before packing; after dropping).
  public var examples: Int
  /// Bad lines skipped (only with `skipBadLines`).
  public var skippedLines: Int
  /// Examples longer than the maximum sequence length, cut to it; those left with no trained
  /// token were dropped and are counted here too.
  public var truncated: Int
  /// Tokens in `Dataset.examples` (after truncation and packing).
  public var tokens: Int
  /// Trained tokens in `Dataset.examples` (after truncation and packing).
  public var trainedTokens: Int

  public init(lines: Int, examples: Int, skippedLines: Int, truncated: Int, tokens: Int, trainedTokens: Int) {
    self.lines = lines
    self.examples = examples
    self.skippedLines = skippedLines
    self.truncated = truncated
    self.tokens = tokens
    self.trainedTokens = trainedTokens
  }
}

/// Tokenized training examples and how they were read.
public struct Dataset: Sendable {
  /// The examples (packed sequences when `DatasetOptions.pack`), in file order.
  public var examples: [Example]
  public var stats: DatasetStats

  public init(examples: [Example], stats: DatasetStats) {
    self.examples = examples
    self.stats = stats
  }
}
