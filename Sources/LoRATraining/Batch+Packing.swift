import LoRAKernels

/// Packing: several short examples share a row of the batch instead of each padding a row of
/// its own. Each keeps its own positions, attention and dropout masks
/// (`LlamaActivations.spans`), so a packed batch trains exactly what the unpacked one does,
/// on fewer rows.
extension Batch {
  /// Rows for sequences of `lengths` (callers give them longest first): each goes to the
  /// first row it fits in (first fit), a new row when none has room; one longer than a row
  /// gets a row of its own (the batch cuts it).
  /// - Returns: the indices into `lengths` of each row, in placing order.
  public static func pack(lengths: [Int], rowLength: Int) -> [[Int]] {
    var rows: [[Int]] = []
    var used: [Int] = []
    for (i, n) in lengths.enumerated() {
      if let r = used.indices.first(where: { used[$0] + n <= rowLength }) {
        rows[r].append(i)
        used[r] += n
      } else {
        rows.append([i])
        used.append(min(n, rowLength))
      }
    }
    return rows
  }

  /// The examples of `rows` laid out back to back in rows of `length` tokens, each row's
  /// rest padded (spans of at most `bucket` rows, so that no span is longer than the
  /// longest example or 8). Targets stop at each example's end, as they do alone.
  /// - Precondition: each row's examples fit in `length` tokens (a single example is cut).
  public init(rows: [[Example]], length: Int, padID: Int32) {
    var tokens = [Int32](repeating: padID, count: rows.count * length)
    var targets = [Int32](repeating: -1, count: rows.count * length)
    var spans: [Attention.Span] = []
    var spanExamples: [Int] = []
    var placed = 0
    var trainedCount = 0
    for (row, examples) in rows.enumerated() {
      var start = 0
      for example in examples {
        spanExamples.append(placed)
        placed += 1
        let used = min(length - start, example.tokens.count)
        precondition(
          used > 0 && (used == example.tokens.count || examples.count == 1), "packed row overflows")
        trainedCount += Self.write(example, used: used, at: row * length + start, &tokens, &targets)
        spans.append(Attention.Span(row: row, start: start, count: used))
        start += used
      }
      for padding in stride(from: start, to: length, by: Self.bucket) {
        spans.append(Attention.Span(row: row, start: padding, count: min(Self.bucket, length - padding)))
        spanExamples.append(-1)
      }
    }
    self.spanExamples = spanExamples
    self.batch = rows.count
    self.length = length
    self.tokens = tokens
    self.targets = targets
    self.trainedCount = trainedCount
    self.spans = spans
  }
}
