import LoRAKernels

/// Packing: several short examples share a row of the batch instead of each padding a row of
/// its own. Each keeps its own positions, attention and dropout masks
/// (`LlamaActivations.spans`), so a packed batch trains exactly what the unpacked one does,
/// on fewer rows.
extension Batch {
  /// Rows for sequences of `lengths` (callers give them longest first): each goes to the
  /// first row it fits in (first fit, `RowPacker`), a new row when none has room.
  /// - Returns: the indices into `lengths` of each row, in placing order.
  public static func pack(lengths: [Int], rowLength: Int) -> [[Int]] {
    var packer = RowPacker(rowLength: rowLength)
    var rows: [[Int]] = []
    for (i, n) in lengths.enumerated() {
      let r = packer.add(n)
      if r == rows.count { rows.append([]) }
      rows[r].append(i)
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

/// First-fit packing of sequences into rows of `rowLength` tokens, one sequence at a time.
/// A sequence longer than a row gets a row of its own (the batch cuts it).
public struct RowPacker: Sendable {
  public let rowLength: Int
  /// Tokens used in each row so far.
  public private(set) var used: [Int] = []
  public init(rowLength: Int) { self.rowLength = rowLength }

  /// Rows so far.
  public var rows: Int { used.count }

  /// The row a sequence of n tokens would go to (`rows`: a new one).
  public func row(for n: Int) -> Int {
    used.indices.first { used[$0] + n <= rowLength } ?? used.count
  }

  /// Places a sequence of n tokens; returns its row.
  @discardableResult
  public mutating func add(_ n: Int) -> Int {
    let r = row(for: n)
    if r == used.count { used.append(min(n, rowLength)) } else { used[r] += n }
    return r
  }
}
