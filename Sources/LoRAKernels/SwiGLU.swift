import Foundation

/// The gated MLP activation of Llama: out = silu(gate) · up, silu(x) = x · σ(x).
///
/// Eight elements at a time (`VectorMath`, e^−gate from libmvec where the CPU allows); the
/// last partial group of a range goes through the same vector code, zero-padded, so every
/// element gets the same float result whatever the split over threads.
public enum SwiGLU {
  typealias Vector = VectorMath.Vector

  /// - out, gate, up: [N, F].
  public static func forward(_ out: Tensor, gate: Tensor, up: Tensor) {
    precondition(out.count == gate.count && gate.count == up.count, "SwiGLU shapes differ")
    let (o, g, u) = (out.base, gate.base, up.base)
    Parallel.forRanges(out.count, grain: 4096) { range, _ in
      let start = range.lowerBound
      VectorMath.withNegatedExp(g + start, count: range.count) { j, lanes, e in
        let i = start + j
        let result = silu(load(g + i, lanes), negatedExp: e) * load(u + i, lanes)
        store(result, o + i, lanes)
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
      let start = range.lowerBound
      VectorMath.withNegatedExp(g + start, count: range.count) { j, lanes, e in
        let i = start + j
        let (dgi, dui) = gradients(
          dout: load(d + i, lanes), gate: load(g + i, lanes), up: load(u + i, lanes), negatedExp: e)
        store(dui, du + i, lanes)
        store(dgi, dg + i, lanes)
      }
    }
  }

  /// silu(x) = x / (1 + e^−x), given e^−x.
  @inline(__always)
  static func silu(_ x: Vector, negatedExp e: Vector) -> Vector {
    x / (1 + e)
  }

  /// (dgate, dup) for eight elements, given e^−gate.
  @inline(__always)
  static func gradients(dout: Vector, gate x: Vector, up: Vector, negatedExp e: Vector) -> (Vector, Vector) {
    let s = 1 / (1 + e)
    return (dout * up * s * (1 + x * (1 - s)), dout * x * s)
  }

  /// p[0..<lanes] in the first lanes, zeros after.
  @inline(__always)
  static func load(_ p: UnsafeMutablePointer<Float>, _ lanes: Int) -> Vector {
    lanes == VectorMath.width ? VectorMath.load(p) : VectorMath.padded(p, lanes)
  }

  /// The first `lanes` lanes of v to p[0..<lanes].
  @inline(__always)
  static func store(_ v: Vector, _ p: UnsafeMutablePointer<Float>, _ lanes: Int) {
    if lanes == VectorMath.width {
      VectorMath.store(v, p)
    } else {
      for j in 0..<lanes { p[j] = v[j] }
    }
  }
}
