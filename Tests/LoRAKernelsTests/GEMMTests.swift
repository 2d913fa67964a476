import Testing

@testable import LoRAKernels

/// A deterministic pseudo-random tensor with values in [-1, 1).
func randomTensor(_ shape: [Int], seed: UInt64) -> Tensor {
  var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
  let t = Tensor(zeros: shape)
  for i in 0..<t.count {
    state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
    t[i] = Float(state >> 40) / Float(1 << 23) - 1
  }
  return t
}

/// The textbook triple loop in Double: the reference GEMM is checked against.
func naiveProduct(
  _ a: [Float], _ aRows: Int, _ aCols: Int, _ transA: Bool,
  _ b: [Float], _ bRows: Int, _ bCols: Int, _ transB: Bool
) -> [Double] {
  let m = transA ? aCols : aRows
  let k = transA ? aRows : aCols
  let n = transB ? bRows : bCols
  var c = [Double](repeating: 0, count: m * n)
  for i in 0..<m {
    for j in 0..<n {
      var sum = 0.0
      for p in 0..<k {
        let x = transA ? a[p * aCols + i] : a[i * aCols + p]
        let y = transB ? b[j * bCols + p] : b[p * bCols + j]
        sum += Double(x) * Double(y)
      }
      c[i * n + j] = sum
    }
  }
  return c
}

@Suite struct GEMMTests {
  @Test(arguments: [
    (Transpose.none, Transpose.none), (.transposed, .none), (.none, .transposed), (.transposed, .transposed),
  ])
  func matchesNaiveProduct(transA: Transpose, transB: Transpose) {
    let (m, n, k) = (37, 23, 51)  // odd sizes cross OpenBLAS's blocking edges
    let a = randomTensor(transA == .none ? [m, k] : [k, m], seed: 1)
    let b = randomTensor(transB == .none ? [k, n] : [n, k], seed: 2)
    let c = Tensor(zeros: [m, n])
    GEMM.multiply(into: c, a, b, transposeA: transA, transposeB: transB)
    let expected = naiveProduct(
      a.values, a.shape[0], a.shape[1], transA == .transposed,
      b.values, b.shape[0], b.shape[1], transB == .transposed)
    for i in 0..<c.count {
      #expect(abs(Double(c[i]) - expected[i]) <= 1e-5 * Double(k), "element \(i)")
    }
  }

  @Test(arguments: [
    (Transpose.none, Transpose.none), (.transposed, .none), (.none, .transposed), (.transposed, .transposed),
  ])
  func singleRowProductsMatchToo(transA: Transpose, transB: Transpose) {
    // M = 1 takes the matrix-vector path.
    let (n, k) = (19, 33)
    let a = randomTensor(transA == .none ? [1, k] : [k, 1], seed: 8)
    let b = randomTensor(transB == .none ? [k, n] : [n, k], seed: 9)
    let c = randomTensor([1, n], seed: 10)
    let before = c.values
    GEMM.multiply(into: c, a, b, transposeA: transA, transposeB: transB, alpha: 2, beta: 0.5)
    let expected = naiveProduct(
      a.values, a.shape[0], a.shape[1], transA == .transposed, b.values, b.shape[0], b.shape[1],
      transB == .transposed)
    for i in 0..<n {
      #expect(abs(Double(c[i]) - (2 * expected[i] + 0.5 * Double(before[i]))) < 1e-4, "element \(i)")
    }
  }

  @Test func alphaAndBetaAccumulate() {
    let a = randomTensor([4, 3], seed: 3)
    let b = randomTensor([3, 5], seed: 4)
    let c = randomTensor([4, 5], seed: 5)
    let before = c.values
    GEMM.multiply(into: c, a, b, alpha: 0.5, beta: 1)
    let product = naiveProduct(a.values, 4, 3, false, b.values, 3, 5, false)
    for i in 0..<c.count {
      #expect(abs(Double(c[i]) - (Double(before[i]) + 0.5 * product[i])) < 1e-5)
    }
  }

  @Test func leadingDimensionsFlatten() {
    // A [B, T, D] activation times a [D, F] weight is a [B·T, D] · [D, F] product.
    let x = randomTensor([2, 3, 4], seed: 6)
    let w = randomTensor([4, 5], seed: 7)
    let y = Tensor(zeros: [2, 3, 5])
    GEMM.multiply(into: y, x, w)
    let expected = naiveProduct(x.values, 6, 4, false, w.values, 4, 5, false)
    for i in 0..<y.count { #expect(abs(Double(y[i]) - expected[i]) < 1e-5) }
  }

  @Test func emptyInnerDimensionGivesZero() {
    let c = Tensor(shape: [2, 2], repeating: 9)
    GEMM.multiply(into: c, Tensor(zeros: [2, 0]), Tensor(zeros: [0, 2]))
    #expect(c.values == [0, 0, 0, 0])
  }

  @Test func measurementReportsPlausibleSpeed() {
    let measured = GEMM.measure(m: 64, n: 64, k: 64, minimumSeconds: 0.01)
    #expect(measured.repetitions >= 3)
    #expect(measured.gflops > 0.01 && measured.gflops < 10_000)
  }

  @Test func verificationFindsNoError() {
    #expect(GEMM.verify() < 1e-5)
  }

  /// Which OpenBLAS kernel replaces OpenBLAS's own choice: fallbacks on AVX2/AVX-512 CPUs,
  /// and the AVX-512 kernels on AMD Zen 4 only.
  @Test func preferredKernelByCPU() throws {
    let zen4 = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\n"
    let cpu = try #require(BLAS.cpuFamily(cpuinfo: zen4))
    #expect(cpu.vendor == "AuthenticAMD" && cpu.family == 25)
    #expect(BLAS.cpuFamily(cpuinfo: "flags\t: fpu\n") == nil)
    let amd25 = (vendor: "AuthenticAMD", family: 25)
    #expect(BLAS.preferredCoreType(current: "Cooperlake", features: "avx512", cpu: amd25) == "Haswell")
    #expect(BLAS.preferredCoreType(current: "SkylakeX", features: "avx512", cpu: amd25) == "Haswell")
    #expect(BLAS.preferredCoreType(current: "Zen", features: "avx2+fma", cpu: amd25) == nil)
    #expect(BLAS.preferredCoreType(current: "Haswell", features: "avx512", cpu: amd25) == nil)
    #expect(
      BLAS.preferredCoreType(current: "Cooperlake", features: "avx512", cpu: ("AuthenticAMD", 26)) == nil)
    #expect(BLAS.preferredCoreType(current: "SkylakeX", features: "avx512", cpu: ("GenuineIntel", 6)) == nil)
    #expect(
      BLAS.preferredCoreType(current: "Prescott", features: "avx512", cpu: ("GenuineIntel", 6)) == "SkylakeX")
    #expect(BLAS.preferredCoreType(current: "Prescott", features: "avx2+fma", cpu: nil) == "Haswell")
  }
}

@Suite struct TensorTests {
  @Test func viewsShareMemoryWithTheirParent() {
    let parent = Tensor(shape: [2, 3], values: [1, 2, 3, 4, 5, 6])
    let row = parent.view(offset: 3, shape: [3])
    #expect(row.values == [4, 5, 6])
    row[0] = 40
    #expect(parent[3] == 40)
    parent.zero()
    #expect(row.values == [0, 0, 0])
    #expect(parent.reshaped([3, 2]).shape == [3, 2])
  }

  @Test func viewOutlivesItsParentReference() {
    var parent: Tensor? = Tensor(shape: [4], values: [1, 2, 3, 4])
    let tail = parent!.view(offset: 2, shape: [2])
    parent = nil
    #expect(tail.values == [3, 4])
  }

  @Test func scalarsAndEmptyTensors() {
    #expect(Tensor(zeros: []).count == 1)
    #expect(Tensor(zeros: [0, 5]).count == 0)
    #expect(Tensor(zeros: [0, 5]).values.isEmpty)
  }

  @Test func fillAndCopy() {
    let a = Tensor(shape: [3], repeating: 2)
    let b = Tensor(zeros: [3])
    b.copy(from: a)
    #expect(b.values == [2, 2, 2])
  }
}
