import Dispatch

extension GEMM {
  /// Result of timing repeated `[M, K] · [K, N]` products.
  public struct Measurement: Sendable, Codable, Equatable {
    public var m: Int
    public var n: Int
    public var k: Int
    public var repetitions: Int
    public var seconds: Double
    /// Achieved GFLOP/s: `2·M·N·K · repetitions / seconds / 1e9`.
    public var gflops: Double { GEMM.flops(m: m, n: n, k: k) * Double(repetitions) / seconds / 1e9 }
  }

  /// Times `sgemm` on an `[M, K] · [K, N]` product of random data after one warm-up call,
  /// repeating until `minimumSeconds` have passed (at least `minimumRepetitions` times).
  ///
  /// The default shape is a SmolLM2-135M MLP projection over 1024 tokens (1024 × 1536 × 576),
  /// the size of product that dominates a training step.
  public static func measure(
    m: Int = 1024, n: Int = 1536, k: Int = 576, minimumSeconds: Double = 0.5,
    minimumRepetitions: Int = 3
  ) -> Measurement {
    let a = Tensor(zeros: [m, k])
    let b = Tensor(zeros: [k, n])
    let c = Tensor(zeros: [m, n])
    var state: UInt32 = 0x9E37_79B9
    for t in [a, b] {
      for i in 0..<t.count {
        state = state &* 1_664_525 &+ 1_013_904_223
        t[i] = Float(state >> 8) / Float(1 << 24) - 0.5
      }
    }
    return Measurement.timing(
      m: m, n: n, k: k, minimumSeconds: minimumSeconds, minimumRepetitions: minimumRepetitions
    ) { multiply(into: c, a, b) }
  }
}

extension GEMM.Measurement {
  /// Times `product`, an `[M, K] · [K, N]` product, after one warm-up call (thread start,
  /// page faults, primitive creation), repeating it until `minimumSeconds` have passed (at
  /// least `minimumRepetitions` times).
  package static func timing<Failure: Error>(
    m: Int, n: Int, k: Int, minimumSeconds: Double, minimumRepetitions: Int,
    _ product: () throws(Failure) -> Void
  ) throws(Failure) -> Self {
    try product()
    var repetitions = 0
    let start = DispatchTime.now().uptimeNanoseconds
    var elapsed = 0.0
    repeat {
      try product()
      repetitions += 1
      elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    } while elapsed < minimumSeconds || repetitions < minimumRepetitions
    return Self(m: m, n: n, k: k, repetitions: repetitions, seconds: elapsed)
  }
}

extension GEMM {
  /// Largest relative error of `sgemm` against a double-precision triple loop on a small
  /// product of odd sizes in every transpose combination. A wrong BLAS kernel (an
  /// `OPENBLAS_CORETYPE` the CPU does not really support) shows up here as a large value.
  public static func verify() -> Double {
    let (m, n, k) = (29, 31, 67)
    var state: UInt32 = 12345
    func fill(_ t: Tensor) {
      for i in 0..<t.count {
        state = state &* 1_664_525 &+ 1_013_904_223
        t[i] = Float(state >> 8) / Float(1 << 24) - 0.5
      }
    }
    var worst = 0.0
    for (opA, opB) in [
      (Transpose.none, Transpose.none), (.transposed, .none), (.none, .transposed),
      (.transposed, .transposed),
    ] {
      let a = Tensor(zeros: opA == .none ? [m, k] : [k, m])
      let b = Tensor(zeros: opB == .none ? [k, n] : [n, k])
      fill(a)
      fill(b)
      let c = Tensor(zeros: [m, n])
      multiply(into: c, a, b, transposeA: opA, transposeB: opB)
      for i in 0..<m {
        for j in 0..<n {
          var exact = 0.0
          var magnitude = 0.0
          for p in 0..<k {
            let x = Double(opA == .none ? a[i * k + p] : a[p * m + i])
            let y = Double(opB == .none ? b[p * n + j] : b[j * k + p])
            exact += x * y
            magnitude += abs(x * y)
          }
          worst = max(worst, abs(Double(c[i * n + j]) - exact) / max(magnitude, 1e-30))
        }
      }
    }
    return worst
  }
}
