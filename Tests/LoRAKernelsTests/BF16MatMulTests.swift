import Foundation
import Testing

@testable import LoRAKernels

/// oneDNN 2.x has bf16 matrix products on AVX-512 CPUs only (native with AVX512_BF16,
/// emulated without); elsewhere (or under `DNNL_MAX_CPU_ISA=AVX2`) `unimplementedOffAVX512`
/// checks the error instead.
let bf16ProductsAvailable = BF16MatMul.available

/// Largest |c − reference| over the magnitude Σ|a||b| of each element (the scale every
/// rounding error of a dot product is proportional to).
func worstRelativeError(_ c: Tensor, _ reference: Tensor, magnitude: Tensor) -> Double {
  var worst = 0.0
  for i in 0..<c.count {
    worst = max(worst, Double(abs(c[i] - reference[i])) / max(Double(magnitude[i]), 1e-30))
  }
  return worst
}

/// A copy of `t` with every element replaced by its absolute value.
func absolute(_ t: Tensor) -> Tensor { Tensor(shape: t.shape, values: t.values.map { abs($0) }) }

@Suite(.enabled(if: bf16ProductsAvailable)) struct BF16MatMulTests {
  /// Forward (`x · Wᵀ`, W `[N, K]`) and backward (`dy · W`) products of SmolLM2-135M sizes,
  /// and small odd ones, in both layouts.
  ///
  /// Products of two bf16 values are exact in fp32, so against fp32 GEMM of the bf16-rounded
  /// inputs only the fp32 summation order differs (≲ 1e-5 of Σ|a||b|). Against the fp32
  /// product of the unrounded inputs each term a·b is off by at most (1 + 2⁻⁸)² − 1 ≈ 2⁻⁷,
  /// since each input rounding is at most 2⁻⁸ relative.
  @Test(arguments: [
    (64, 1536, 576, Transpose.transposed),  // forward of the MLP up projection
    (64, 576, 1536, .none),  // its input gradient: dx[64, 576] = dy[64, 1536] · W[1536, 576]
    (3, 5, 7, .transposed), (3, 5, 7, .none), (37, 23, 51, .transposed), (1, 19, 33, .none),
  ])
  func matchesFP32Products(m: Int, n: Int, k: Int, transposeB: Transpose) throws {
    let a = randomTensor([m, k], seed: UInt64(m * 7 + n))
    let w = randomTensor(transposeB == .transposed ? [n, k] : [k, n], seed: UInt64(k))
    let stored = try BF16Tensor(converting: w, name: "w")
    let c = Tensor(shape: [m, n], repeating: .nan)  // beta 0 overwrites, NaNs included
    try BF16MatMul.multiply(into: c, a, stored, transposeB: transposeB)

    let roundedA = a.clone()
    BFloat16.round(roundedA)
    let ofRounded = Tensor(zeros: [m, n])
    GEMM.multiply(into: ofRounded, roundedA, stored.widened(), transposeB: transposeB)
    let exact = Tensor(zeros: [m, n])
    GEMM.multiply(into: exact, a, w, transposeB: transposeB)
    let magnitude = Tensor(zeros: [m, n])
    GEMM.multiply(into: magnitude, absolute(a), absolute(w), transposeB: transposeB)

    #expect(worstRelativeError(c, ofRounded, magnitude: magnitude) < 1e-5)
    let loose = worstRelativeError(c, exact, magnitude: magnitude)
    #expect(loose < 2.0 / 256 + 1.0 / 65_536 + 1e-5)
    #expect(loose > 1e-5)  // the inputs really were rounded
  }

  /// `beta` adds into the output through oneDNN's sum post-op, as backward passes need.
  @Test(arguments: [Float(1), 0.5])
  func betaAccumulates(beta: Float) throws {
    let (m, n, k) = (11, 13, 40)
    let a = randomTensor([m, k], seed: 81)
    let stored = try BF16Tensor(converting: randomTensor([n, k], seed: 82), name: "w")
    let c = randomTensor([m, n], seed: 83)
    let expected = c.clone()
    try BF16MatMul.multiply(into: c, a, stored, transposeB: .transposed, beta: beta)
    let roundedA = a.clone()
    BFloat16.round(roundedA)
    GEMM.multiply(into: expected, roundedA, stored.widened(), transposeB: .transposed, beta: beta)
    for i in 0..<c.count { #expect(abs(c[i] - expected[i]) < 1e-5, "element \(i)") }
  }

  @Test func emptyInnerDimensionScalesTheOutput() throws {
    let stored = try BF16Tensor(converting: Tensor(zeros: [3, 0]), name: "w")
    let c = Tensor(shape: [2, 3], repeating: 9)
    try BF16MatMul.multiply(into: c, Tensor(zeros: [2, 0]), stored, transposeB: .transposed, beta: 1)
    #expect(c.values == [9, 9, 9, 9, 9, 9])
    try BF16MatMul.multiply(into: c, Tensor(zeros: [2, 0]), stored, transposeB: .transposed, beta: -0.0)
    #expect(c.values == [0, 0, 0, 0, 0, 0])
  }

  /// The backward product is the gradient of L(x) = Σ (x · W̃ᵀ) ∘ r with respect to x, where
  /// W̃ is the stored bf16 weight (the function is evaluated by fp32 GEMM of W̃).
  @Test func backwardIsTheGradientOfTheForward() throws {
    let (m, n, k) = (4, 6, 5)
    let x = randomTensor([m, k], seed: 91)
    let stored = try BF16Tensor(converting: randomTensor([n, k], seed: 92), name: "w")
    let weight = stored.widened()
    let r = randomTensor([m, n], seed: 93)
    let y = Tensor(zeros: [m, n])
    func loss() -> Double {
      GEMM.multiply(into: y, x, weight, transposeB: .transposed)
      return weightedSum(y, r)
    }
    // The product rounds r to bf16 (≤ 2⁻⁸ relative), within the usual 1e-2.
    let dx = Tensor(zeros: [m, k])
    try BF16MatMul.multiply(into: dx, r, stored)
    #expect(finiteDifferenceError(input: x, analytic: dx, loss: loss) < 1e-2)
    // With r already bf16 only the finite differences' own error remains.
    BFloat16.round(r)
    try BF16MatMul.multiply(into: dx, r, stored)
    #expect(finiteDifferenceError(input: x, analytic: dx, loss: loss) < 1e-3)
  }

  /// A shape's primitive is made once per thread; later calls reuse it and give the same bits.
  @Test func repeatedCallsReuseThePrimitive() throws {
    let a = randomTensor([9, 33], seed: 101)
    let stored = try BF16Tensor(converting: randomTensor([17, 33], seed: 102), name: "w")
    let first = Tensor(zeros: [9, 17])
    try BF16MatMul.multiply(into: first, a, stored, transposeB: .transposed)
    let cached = BF16MatMul.cachedProducts
    #expect(cached >= 1)
    for _ in 0..<5 {
      let again = Tensor(zeros: [9, 17])
      try BF16MatMul.multiply(into: again, a, stored, transposeB: .transposed)
      #expect(again.values == first.values)
    }
    #expect(BF16MatMul.cachedProducts == cached)
    try BF16MatMul.multiply(
      into: Tensor(zeros: [8, 17]), a.view(offset: 0, shape: [8, 33]), stored, transposeB: .transposed)
    #expect(BF16MatMul.cachedProducts == cached + 1)
  }

  /// Two thread-ranks multiplying at once (each with its own engine, stream, primitives and
  /// scratch) get the bits one thread gets.
  @Test func threadRanksMatchOneThread() throws {
    let shapes = [(64, 1536, 576, Transpose.transposed), (64, 576, 1536, .none), (5, 7, 3, .transposed)]
    let cases = try shapes.enumerated().map { index, shape in
      let (m, n, k, op) = shape
      let a = randomTensor([m, k], seed: UInt64(110 + index))
      let w = randomTensor(op == .transposed ? [n, k] : [k, n], seed: UInt64(120 + index))
      return (a, try BF16Tensor(converting: w, name: "w\(index)"), n, op)
    }
    func run() throws -> [[Float]] {
      try cases.map { a, w, n, op in
        let c = Tensor(zeros: [a.shape[0], n])
        try BF16MatMul.multiply(into: c, a, w, transposeB: op)
        return c.values
      }
    }
    let alone = try run()
    let results = ResultsBox()
    let done = DispatchSemaphore(value: 0)
    let work = UncheckedSendable(run)
    for rank in 0..<2 {
      Thread {
        results.store(rank, Result { (BF16MatMul.cachedProducts, try (0..<3).map { _ in try work.value() }) })
        done.signal()
      }.start()
    }
    for _ in 0..<2 { done.wait() }
    for rank in 0..<2 {
      let (cachedAtStart, rounds) = try #require(try results.value(rank)?.get())
      #expect(cachedAtStart == 0)  // a new thread starts with no primitives
      for round in rounds { #expect(round == alone, "rank \(rank)") }
    }
  }

  @Test func measurementReportsPlausibleSpeed() throws {
    for transposeB in [Transpose.transposed, .none] {
      let measured = try BF16MatMul.measure(m: 64, n: 64, k: 64, transposeB: transposeB, minimumSeconds: 0.01)
      #expect(measured.repetitions >= 3)
      #expect(measured.gflops > 0.01 && measured.gflops < 10_000)
    }
  }

  @Test func settingsAndCPUReport() throws {
    #expect(BF16MatMul.threads == BLAS.threads)
    #expect(BF16MatMul.libraryVersion.split(separator: ".").count == 3)
    let flags = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
    // Native bf16 needs the CPU's AVX512_BF16 (or AMX) instructions.
    if BF16MatMul.nativeBF16 { #expect(flags.contains("avx512_bf16") || flags.contains("amx_bf16")) }
    #expect(BF16MatMul.instructionSet.hasPrefix("avx512"))
    let name = try BF16MatMul.implementation(m: 64, n: 1536, k: 576, transposeB: .transposed)
    #expect(!name.isEmpty && name != "unknown")
  }
}

@Suite struct BF16MatMulUnavailableTests {
  /// Without AVX-512 oneDNN 2.x has no bf16 matmul: the product throws, naming the call,
  /// the status and the shapes, instead of computing something else.
  @Test(.disabled(if: bf16ProductsAvailable)) func unimplementedOffAVX512() throws {
    #expect(!BF16MatMul.nativeBF16 && !BF16MatMul.instructionSet.hasPrefix("avx512"))
    let stored = try BF16Tensor(converting: randomTensor([4, 3], seed: 1), name: "w")
    #expect {
      try BF16MatMul.multiply(
        into: Tensor(zeros: [2, 4]), randomTensor([2, 3], seed: 2), stored, transposeB: .transposed)
    } throws: { error in
      "\(error)".contains("unimplemented") && "\(error)".contains("c[2, 4] = a[2, 3] · b[4, 3]ᵀ")
    }
  }
}

/// Results of threads, one slot per rank.
private final class ResultsBox: @unchecked Sendable {
  private let lock = NSLock()
  private var slots: [Int: Result<(Int, [[[Float]]]), any Error>] = [:]
  func store(_ rank: Int, _ result: Result<(Int, [[[Float]]]), any Error>) {
    lock.withLock { slots[rank] = result }
  }
  func value(_ rank: Int) -> Result<(Int, [[[Float]]]), any Error>? { lock.withLock { slots[rank] } }
}
