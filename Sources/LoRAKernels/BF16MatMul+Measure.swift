extension BF16MatMul {
  /// Times the forward product of a frozen linear layer through oneDNN, `y[M, N] = x[M, K] · Wᵀ`
  /// with W `[N, K]` in bf16 and x in fp32 (its rounding to bf16 included), on random data
  /// after one warm-up call (primitive creation), repeating until `minimumSeconds` have passed
  /// (at least `minimumRepetitions` times). `transposeB: .none` times the input-gradient
  /// product `dx[M, N] = dy[M, K] · W` with W `[K, N]` instead. Runs on `threads` threads.
  ///
  /// The default shape is that of `GEMM.measure` (a SmolLM2-135M MLP projection over 1024
  /// tokens, 1024 × 1536 × 576), so the two compare directly.
  public static func measure(
    m: Int = 1024, n: Int = 1536, k: Int = 576, transposeB: Transpose = .transposed,
    minimumSeconds: Double = 0.5, minimumRepetitions: Int = 3
  ) throws(BF16Error) -> GEMM.Measurement {
    var random = SeededRandom(seed: 0x5EED)
    let x = Tensor(zeros: [m, k])
    let w = Tensor(zeros: transposeB == .transposed ? [n, k] : [k, n])
    for t in [x, w] {
      t.withUnsafeMutableBufferPointer { for i in $0.indices { $0[i] = random.nextUnitFloat() - 0.5 } }
    }
    let weight = try BF16Tensor(converting: w, name: "measurement weight")
    let y = Tensor(zeros: [m, n])
    return try GEMM.Measurement.timing(
      m: m, n: n, k: k, minimumSeconds: minimumSeconds, minimumRepetitions: minimumRepetitions
    ) { () throws(BF16Error) in try multiply(into: y, x, weight, transposeB: transposeB) }
  }
}

extension BF16Products {
  /// Times `y[M, N] = x[M, K] · Wᵀ` with W in bf16 on the current route, split over the
  /// kernel threads as the model's products are: the bf16 peak a bf16 base's utilisation is
  /// measured against (the shape of `GEMM.measure`).
  public static func measure(
    m: Int = 1024, n: Int = 1536, k: Int = 576, minimumSeconds: Double = 0.5, minimumRepetitions: Int = 3
  ) throws(BF16Error) -> GEMM.Measurement {
    var random = SeededRandom(seed: 0x5EED)
    let x = Tensor(zeros: [m, k])
    let w = Tensor(zeros: [n, k])
    for t in [x, w] {
      t.withUnsafeMutableBufferPointer { for i in $0.indices { $0[i] = random.nextUnitFloat() - 0.5 } }
    }
    let weight = try BF16Tensor(converting: w, name: "measurement weight")
    let y = Tensor(zeros: [m, n])
    try check()
    return try GEMM.Measurement.timing(
      m: m, n: n, k: k, minimumSeconds: minimumSeconds, minimumRepetitions: minimumRepetitions
    ) { () throws(BF16Error) in multiply(into: y, x, weight, transposeB: .transposed) }
  }
}
