/// Inverted dropout with a mask drawn from a seed instead of stored: the backward pass
/// regenerates the same mask from the same seed, so dropout costs no activation memory.
public enum Dropout {
  /// out = x ⊙ m / (1 − p), m_i ~ Bernoulli(1 − p) from `seed`. Being linear with a diagonal
  /// Jacobian, the same call with the same seed is also its own backward (dx from dy).
  /// `out` may be `x`.
  /// - out, x: [N, IN].
  public static func apply(_ out: Tensor, _ x: Tensor, probability: Float, seed: UInt64) {
    precondition(out.count == x.count, "dropout shapes")
    guard probability > 0 else {
      if out !== x { out.copy(from: x) }
      return
    }
    mask(out.base, x.base, count: x.count, probability: probability, seed: seed)
  }

  /// o[n] = i[n]·m_n/(1 − p) for n < count, m from `seed`'s stream.
  private static func mask(
    _ o: UnsafeMutablePointer<Float>, _ i: UnsafeMutablePointer<Float>, count: Int, probability: Float,
    seed: UInt64
  ) {
    var random = SeededRandom(seed: seed)
    let keep = 1 - probability
    let scale = 1 / keep
    for n in 0..<count { o[n] = random.nextUnitFloat() < keep ? i[n] * scale : 0 }
  }

  /// The same with a mask stream per sequence: x's rows are sequences of `rowsPerSequence`
  /// rows, and sequence s's mask comes from `seed(s)`, row by row from its first, so a
  /// sequence's mask does not depend on how many rows it is padded to nor on the sequences
  /// beside it. Its own backward too.
  /// - out, x: [S·rowsPerSequence, IN].
  public static func apply(
    _ out: Tensor, _ x: Tensor, probability: Float, rowsPerSequence: Int, seed: (Int) -> UInt64
  ) {
    precondition(out.count == x.count, "dropout shapes")
    guard probability > 0 else {
      if out !== x { out.copy(from: x) }
      return
    }
    let width = x.shape.last ?? 1
    let perSequence = rowsPerSequence * width
    precondition(perSequence > 0 && x.count % perSequence == 0, "dropout rows are not whole sequences")
    for s in 0..<x.count / perSequence {
      let start = s * perSequence
      mask(out.base + start, x.base + start, count: perSequence, probability: probability, seed: seed(s))
    }
  }

  /// The same for sequences of any lengths (packed rows): sequence s is x's rows
  /// `sequences[s]`, its mask from `seed(s)` row by row from its first, so a packed sequence
  /// gets the mask it gets alone.
  /// - out, x: [N, IN]; sequences: disjoint row ranges that cover N.
  public static func apply(
    _ out: Tensor, _ x: Tensor, probability: Float, sequences: [Range<Int>], seed: (Int) -> UInt64
  ) {
    precondition(out.count == x.count, "dropout shapes")
    guard probability > 0 else {
      if out !== x { out.copy(from: x) }
      return
    }
    let width = x.shape.last ?? 1
    let rows = x.count / max(width, 1)
    var covered = 0
    for (s, range) in sequences.enumerated() {
      precondition(range.lowerBound >= 0 && range.upperBound <= rows, "dropout rows outside x")
      let start = range.lowerBound * width
      mask(
        out.base + start, x.base + start, count: range.count * width, probability: probability, seed: seed(s))
      covered += range.count
    }
    precondition(covered == rows, "dropout sequences cover \(covered) of \(rows) rows")
  }
}
