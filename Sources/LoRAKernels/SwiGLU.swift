import Foundation

/// The gated MLP activation of Llama: out = silu(gate) · up, silu(x) = x · σ(x).
public enum SwiGLU {
  /// - out, gate, up: [N, F].
  public static func forward(_ out: Tensor, gate: Tensor, up: Tensor) {
    precondition(out.count == gate.count && gate.count == up.count, "SwiGLU shapes differ")
    let o = out.base
    let g = gate.base
    let u = up.base
    for i in 0..<out.count {
      let x = g[i]
      o[i] = x / (1 + exp(-x)) * u[i]
    }
  }
}
