import Foundation

/// The gated MLP activation of Llama: out = silu(gate) · up, silu(x) = x · σ(x).
///
/// Eight elements at a time (`VectorMath`); the last partial group of a range goes through
/// the same vector code, zero-padded, so every element gets the same float result
/// whatever the split over threads.
public enum SwiGLU {
  typealias Vector = VectorMath.Vector

  /// - out, gate, up: [N, F].
  public static func forward(_ out: Tensor, gate: Tensor, up: Tensor) {
    precondition(out.count == gate.count && gate.count == up.count, "SwiGLU shapes differ")
    let (o, g, u) = (out.base, gate.base, up.base)
    Parallel.forRanges(out.count, grain: 4096) { range, _ in
      var i = range.lowerBound
      while i + VectorMath.width <= range.upperBound {
        VectorMath.store(silu(VectorMath.load(g + i)) * VectorMath.load(u + i), o + i)
        i += VectorMath.width
      }
      if i < range.upperBound {
        let n = range.upperBound - i
        let result = silu(padded(g + i, n)) * padded(u + i, n)
        for j in 0..<n { o[i + j] = result[j] }
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
      var i = range.lowerBound
      while i + VectorMath.width <= range.upperBound {
        let (dgi, dui) = gradients(
          dout: VectorMath.load(d + i), gate: VectorMath.load(g + i), up: VectorMath.load(u + i))
        VectorMath.store(dui, du + i)
        VectorMath.store(dgi, dg + i)
        i += VectorMath.width
      }
      if i < range.upperBound {
        let n = range.upperBound - i
        let (dgi, dui) = gradients(dout: padded(d + i, n), gate: padded(g + i, n), up: padded(u + i, n))
        for j in 0..<n {
          du[i + j] = dui[j]
          dg[i + j] = dgi[j]
        }
      }
    }
  }

  /// silu(x) = x / (1 + e^−x)
  @inline(__always)
  static func silu(_ x: Vector) -> Vector {
    x / (1 + VectorMath.exp(-x))
  }

  /// (dgate, dup) for eight elements.
  @inline(__always)
  static func gradients(dout: Vector, gate x: Vector, up: Vector) -> (Vector, Vector) {
    let s = 1 / (1 + VectorMath.exp(-x))
    return (dout * up * s * (1 + x * (1 - s)), dout * x * s)
  }

  /// p[0..<n] in the first lanes, zeros after.
  @inline(__always)
  static func padded(_ p: UnsafeMutablePointer<Float>, _ n: Int) -> Vector {
    var v = Vector()
    for j in 0..<n { v[j] = p[j] }
    return v
  }
}
