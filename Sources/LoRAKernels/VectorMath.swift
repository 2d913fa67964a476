import CVectorMath
import Foundation

/// Vectorized float math for the element-wise ops: exp and the passes of a softmax.
///
/// `exp` of glibc is a scalar call per element; softmax over 49,152 logits per trained
/// token, attention's softmax and SwiGLU's sigmoid made it about 6% of a training step.
/// These work on eight floats at a time with plain SIMD arithmetic (what every x86-64 CPU
/// has, no CPU-specific build), with the Cephes single-precision exp: range reduction by
/// ln 2 in two parts and a degree-5 polynomial, relative error below 2 ulp over the range.
///
/// Arrays of exps (`exponentiate`, `withNegatedExp`) go through glibc's libmvec instead when
/// the CPU has AVX2 or AVX-512 (`libraryWidth`): 8 or 16 lanes in the CPU's own registers,
/// which this portable build cannot use from Swift.
package enum VectorMath {
  package typealias Vector = SIMD8<Float>
  package static let width = Vector.scalarCount

  /// Lanes of libmvec's exp on this CPU: 16 (AVX-512), 8 (AVX2), or 0 (the Swift exp is
  /// used). `SWIFT_LORA_DIST_VECTOR_EXP=portable` selects the Swift exp everywhere.
  package static let libraryWidth: Int =
    ProcessInfo.processInfo.environment["SWIFT_LORA_DIST_VECTOR_EXP"] == "portable"
    ? 0 : Int(sld_vector_exp_width())

  /// Whether attention's softmax rows and their gradient run in C with AVX-512
  /// (`sld_softmax_row`, `sld_softmax_gradient_row`): where libmvec's exp has 16 lanes.
  package static let fusedRows = libraryWidth == 16

  /// Elements per libmvec call in `withNegatedExp` (a multiple of `width`).
  static let chunk = 256

  /// Calls `body(i, lanes, e)` for each group of eight elements of x[0..<count] in order,
  /// with e = exp(−x[i..<i+lanes]) (lanes < 8 only for the last group; its other lanes
  /// hold exp(−0) = 1). Elements get the same value whatever `count` is.
  @inline(__always)
  package static func withNegatedExp(
    _ x: UnsafePointer<Float>, count: Int, library: Bool = libraryWidth > 0,
    _ body: (_ i: Int, _ lanes: Int, _ e: Vector) -> Void
  ) {
    guard library else {
      var i = 0
      while i < count {
        let lanes = Swift.min(width, count - i)
        body(i, lanes, exp(-(lanes == width ? load(x + i) : padded(x + i, lanes))))
        i += width
      }
      return
    }
    withUnsafeTemporaryAllocation(of: Float.self, capacity: chunk) { buffer in
      let e = buffer.baseAddress!
      var start = 0
      while start < count {
        let n = Swift.min(chunk, count - start)
        sld_vector_exp(e, x + start, n, -1, 0)
        var j = 0
        while j < n {
          let lanes = Swift.min(width, n - j)
          var v = lanes == width ? load(e + j) : Vector(repeating: 1)
          if lanes < width { for l in 0..<lanes { v[l] = e[j + l] } }
          body(start + j, lanes, v)
          j += width
        }
        start += n
      }
    }
  }

  /// p[0..<n] in the first lanes, zeros after.
  @inline(__always)
  package static func padded(_ p: UnsafePointer<Float>, _ n: Int) -> Vector {
    var v = Vector()
    for j in 0..<n { v[j] = p[j] }
    return v
  }

  /// exp of every lane: 0 below −87.3 (where float exp nears the subnormals), +∞ past
  /// 88.72, NaN stays NaN.
  @inline(__always)
  package static func exp(_ x: Vector) -> Vector {
    // Round-to-nearest by adding and subtracting 1.5·2²³ (no rounding instruction needed).
    let magic = Vector(repeating: 12_582_912)
    // (Compare-and-select: the generic pointwiseMin/Max/clamped run lane by lane.)
    var clamped = x
    clamped.replace(with: -87.3, where: x .< -87.3)
    clamped.replace(with: 88.3, where: x .> 88.3)
    let n = (clamped * 1.442_695_04 + magic) - magic
    // r = x − n·ln 2, with ln 2 split so that n·0.693359375 is exact.
    var r = clamped - n * 0.693_359_375
    r = r + n * 2.121_944_4e-4
    var p = Vector(repeating: 1.987_569_15e-4)
    p = p * r + 1.398_199_95e-3
    p = p * r + 8.333_451_9e-3
    p = p * r + 4.166_579_59e-2
    p = p * r + 1.666_666_55e-1
    p = p * r + 5.000_000_12e-1
    p = p * (r * r) + r + 1
    // 2ⁿ from n's bits: (n + 1.5·2²³) holds n in its low mantissa bits.
    let integer = unsafeBitCast(n + magic, to: SIMD8<Int32>.self) &- 0x4B40_0000
    let scale = unsafeBitCast((integer &+ 127) &<< 23, to: Vector.self)
    var result = p * scale
    result.replace(with: 0, where: x .< -87.3)
    result.replace(with: x, where: x .!= x)
    let large = x .> 88.3
    if any(large) {
      // Rare (softmax never gets here): the last float octave before overflow, per element.
      for i in 0..<width where large[i] { result[i] = Foundation.exp(x[i]) }
    }
    return result
  }

  /// The largest of p[0..<count] (−∞ for none).
  package static func maximum(_ p: UnsafePointer<Float>, count: Int) -> Float {
    var best = Vector(repeating: -.infinity)
    var i = 0
    while i + width <= count {
      let v = load(p + i)
      best.replace(with: v, where: v .> best)
      i += width
    }
    var result = best.max()
    while i < count {
      result = Swift.max(result, p[i])
      i += 1
    }
    return result
  }

  /// p[i] = exp(p[i] − shift) for i in 0..<count; returns the sum of the new values
  /// (added in float per 256 elements, then in double). `library`: through libmvec (only
  /// when `libraryWidth > 0`), else the Swift exp.
  @discardableResult
  package static func exponentiate(
    _ p: UnsafeMutablePointer<Float>, count: Int, shift: Float, library: Bool = libraryWidth > 0
  ) -> Double {
    if library {
      sld_vector_exp(p, p, count, 1, -shift)
    } else {
      let s = Vector(repeating: shift)
      var i = 0
      while i < count {
        let lanes = Swift.min(width, count - i)
        let e = exp((lanes == width ? load(p + i) : padded(p + i, lanes)) - s)
        if lanes == width { store(e, p + i) } else { for j in 0..<lanes { p[i + j] = e[j] } }
        i += width
      }
    }
    return sum(p, count: count)
  }

  /// Σ p[i] for i in 0..<count: eight float lanes per 256 elements, then in double.
  package static func sum(_ p: UnsafePointer<Float>, count: Int) -> Double {
    var total = 0.0
    var i = 0
    while i + width <= count {
      var partial = Vector()
      let end = Swift.min(count - width, i + 256 - width)
      while i <= end {
        partial += load(p + i)
        i += width
      }
      total += Double(partial.sum())
    }
    while i < count {
      total += Double(p[i])
      i += 1
    }
    return total
  }

  /// Σ a[i]·b[i] for i in 0..<count, added in eight float lanes.
  package static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Float {
    var lanes = Vector()
    var i = 0
    while i + width <= count {
      lanes += load(a + i) * load(b + i)
      i += width
    }
    var result = lanes.sum()
    while i < count {
      result += a[i] * b[i]
      i += 1
    }
    return result
  }

  /// p[i] *= factor for i in 0..<count.
  package static func scale(_ p: UnsafeMutablePointer<Float>, count: Int, by factor: Float) {
    var i = 0
    while i + width <= count {
      store(load(p + i) * factor, p + i)
      i += width
    }
    while i < count {
      p[i] *= factor
      i += 1
    }
  }

  @inline(__always)
  package static func load(_ p: UnsafePointer<Float>) -> Vector {
    UnsafeRawPointer(p).loadUnaligned(as: Vector.self)
  }

  @inline(__always)
  package static func store(_ v: Vector, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: Vector.self)
  }
}
