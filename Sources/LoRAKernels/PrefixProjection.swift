import Foundation

/// Prefix tuning's reparameterisation (PEFT's `PrefixEncoder` with `prefix_projection`): a
/// two-layer tanh MLP that turns N trainable embeddings into the N rows of every layer's
/// prefix keys and values, table = tanh(E·W1ᵀ + b1)·W2ᵀ + b2.
public enum PrefixProjection {
  /// - table: [N, W]; hidden: [N, H] (tanh output, kept for `backward`); e: [N, E];
  ///   w1: [H, E]; b1: [H]; w2: [W, H]; b2: [W].
  public static func forward(
    table: Tensor, hidden: Tensor, e: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor
  ) {
    PhaseClock.measure(.lora) {
      Linear.forward(hidden, e, weight: w1, bias: b1)
      let h = hidden.base
      for i in 0..<hidden.count { h[i] = Foundation.tanh(h[i]) }
      Linear.forward(table, hidden, weight: w2, bias: b2)
    }
  }

  /// Gradients of `forward`, added into gE, gW1, gB1, gW2 and gB2:
  /// gW2 += dTableᵀ·hidden, gB2 += Σ rows of dTable, dPre = (dTable·W2) ⊙ (1 − hidden²),
  /// gW1 += dPreᵀ·E, gB1 += Σ rows of dPre, gE += dPre·W1.
  /// - dTable: [N, W]; dPre: [N, H] scratch (written); other shapes as in `forward`.
  public static func backward(
    dTable: Tensor, hidden: Tensor, e: Tensor, w1: Tensor, w2: Tensor, gE: Tensor, gW1: Tensor, gB1: Tensor,
    gW2: Tensor, gB2: Tensor, dPre: Tensor
  ) {
    PhaseClock.measure(.lora) {
      GEMM.multiply(into: gW2, dTable, hidden, transposeA: .transposed, beta: 1)
      addColumnSums(gB2, dTable)
      GEMM.multiply(into: dPre, dTable, w2)
      let (d, h) = (dPre.base, hidden.base)
      for i in 0..<dPre.count { d[i] *= 1 - h[i] * h[i] }
      GEMM.multiply(into: gW1, dPre, e, transposeA: .transposed, beta: 1)
      addColumnSums(gB1, dPre)
      GEMM.multiply(into: gE, dPre, w1, beta: 1)
    }
  }

  /// sums[j] += Σ_i m[i, j].
  /// - sums: [W]; m: [N, W].
  static func addColumnSums(_ sums: Tensor, _ m: Tensor) {
    let width = sums.count
    let (s, rows) = (sums.base, m.base)
    for r in 0..<m.count / width {
      let row = rows + r * width
      for j in 0..<width { s[j] += row[j] }
    }
  }
}
