import LoRAKernels

/// B examples laid out as one padded B×T block of inputs and next-token targets.
public struct Batch: Sendable, Equatable {
  /// B, the number of sequences.
  public let batch: Int
  /// T, the length of every row.
  public let length: Int
  /// B·T input ids, row b at b·T; rows shorter than T are padded with the pad id.
  public let tokens: [Int32]
  /// B·T targets: `targets[b·T + t]` is `tokens[b][t+1]` when that token is trained, else -1
  /// (always -1 at t = T−1 and on padding), so position t's loss predicts token t+1.
  public let targets: [Int32]
  /// The number of targets that are not -1.
  public let trainedCount: Int
  /// Packed rows (`init(rows:length:padID:)`): the sequences of every row, then its padding,
  /// as `LlamaActivations.spans`; nil: one example per row.
  public internal(set) var spans: [Attention.Span]?
  /// For each span, the index of its example among the rows' examples in order, −1 for padding.
  public internal(set) var spanExamples: [Int] = []

  /// The row length batches of examples up to `length` tokens are padded to: a multiple of
  /// `bucket`, at most `longest` (the longest example of the run). Padded rows cost as much
  /// as real ones, so the step is small; buffers of each length are views of one arena.
  public static func bucketLength(_ length: Int, longest: Int) -> Int {
    min(longest, (length + bucket - 1) / bucket * bucket)
  }

  /// Rows are padded to multiples of this many tokens.
  public static let bucket = 8

  /// Writes the first `used` tokens of `example` at `base`, and their targets (each trained
  /// next token within them); returns how many targets it wrote.
  static func write(
    _ example: Example, used: Int, at base: Int, _ tokens: inout [Int32], _ targets: inout [Int32]
  ) -> Int {
    var trained = 0
    for t in 0..<used {
      tokens[base + t] = example.tokens[t]
      if t + 1 < used && example.trained[t + 1] {
        targets[base + t] = example.tokens[t + 1]
        trained += 1
      }
    }
    return trained
  }

  /// Lays out `examples` as rows of `length` tokens (nil: the longest example's length);
  /// longer examples are cut to `length`.
  public init(examples: [Example], length: Int?, padID: Int32) {
    let rowLength = max(0, length ?? examples.map(\.tokens.count).max() ?? 0)
    var tokens = [Int32](repeating: padID, count: examples.count * rowLength)
    var targets = [Int32](repeating: -1, count: examples.count * rowLength)
    var trainedCount = 0
    for (row, example) in examples.enumerated() {
      trainedCount += Self.write(
        example, used: min(rowLength, example.tokens.count), at: row * rowLength, &tokens, &targets)
    }
    self.batch = examples.count
    self.length = rowLength
    self.tokens = tokens
    self.targets = targets
    self.trainedCount = trainedCount
  }
}
