import Foundation

/// The gated MLP activation of Llama: out = silu(gate) · up, silu(x) = x · σ(x).
public enum SwiGLU {
  /// - out, gate, up: [N, F].
  public static func forward(_ out: Tensor, gate: Tensor, up: Tensor) {
    precondition(out.count == gate.count && gate.count == up.count, "SwiGLU shapes differ")
    let (o, g, u) = (out.base, gate.base, up.base)
    Parallel.forRanges(out.count, grain: 4096) { range, _ in
      for i in range {
        let x = g[i]
        o[i] = x / (1 + exp(-x)) * u[i]
      }
    }
  }

  /// Gradients of `forward`, written (not added): dgate = dout·up·silu'(gate),
  /// dup = dout·silu(gate), with silu'(x) = σ(x)·(1 + x·(1 − σ(x))).
  /// `dgate` may be the same tensor as `dout`.
  /// - dgate, dup, dout, gate, up: [N, F].
  public static func backward(dgate: Tensor, dup: Tensor, dout: Tensor, gate: Tensor, up: Tensor) {
    precondition(
      dgate.count == gate.count && dup.count == gate.count && dout.count == gate.count, "SwiGLU backward")
    let (dg, du, d, g, u) = (dgate.base, dup.base, dout.base, gate.base, up.base)
    Parallel.forRanges(gate.count, grain: 4096) { range, _ in
      for i in range {
        let x = g[i]
        let s = 1 / (1 + exp(-x))
        let grad = d[i]
        du[i] = grad * x * s
        dg[i] = grad * u[i] * s * (1 + x * (1 - s))
      }
    }
  }
}
