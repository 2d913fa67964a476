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
    var random = SeededRandom(seed: seed)
    let keep = 1 - probability
    let scale = 1 / keep
    let o = out.base
    let i = x.base
    for n in 0..<x.count { o[n] = random.nextUnitFloat() < keep ? i[n] * scale : 0 }
  }
}
