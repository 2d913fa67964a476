/// Padding-free passes in a stacked batch: how each member's sequences become rows.
extension FusedTrainer {
  /// The rows of one stacked pass and their length. A member without `packs` gets a row per
  /// sequence; a padding-free member's sequences share rows, either all in one row (no
  /// padding but the last row's rounding to 8, what a member alone gets), or packed first
  /// fit (`Batch.pack`) into rows of the longest sequence — whichever makes fewer rows of
  /// the stack's common length.
  /// - passes: each member's sequences in this pass; longest: the run's longest sequence.
  static func layout(_ passes: [[AdapterState.Placed]], packs: [Bool], longest: Int) -> (
    rows: [[[AdapterState.Placed]]], length: Int
  ) {
    func tokens(_ row: [AdapterState.Placed]) -> Int { row.reduce(0) { $0 + $1.example.tokens.count } }
    let longestSequence = passes.flatMap { $0 }.map(\.example.tokens.count).max() ?? 1
    let rowLength = Batch.bucketLength(longestSequence, longest: longest)
    let packed = zip(passes, packs).map { pass, packs in
      packs
        ? Batch.pack(lengths: pass.map(\.example.tokens.count), rowLength: rowLength).map {
          $0.map { pass[$0] }
        }
        : pass.map { [$0] }
    }
    guard packs.contains(true) else { return (packed, rowLength) }
    let joined = zip(passes, packs).map { pass, packs in packs ? [pass] : pass.map { [$0] } }
    let joinedLength = Batch.bucketLength(joined.flatMap { $0 }.map(tokens).max() ?? 1, longest: .max)
    let rowsOf = { (rows: [[[AdapterState.Placed]]], length: Int) in rows.reduce(0) { $0 + $1.count } * length
    }
    return rowsOf(joined, joinedLength) <= rowsOf(packed, rowLength)
      ? (joined, joinedLength) : (packed, rowLength)
  }
}
