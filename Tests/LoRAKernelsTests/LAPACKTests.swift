import Foundation
import Testing

@testable import LoRAKernels

/// LAPACK's SVD and QR through OpenBLAS, on row-major matrices, against closed forms and
/// their defining properties.
@Suite struct LAPACKTests {
  static func random(_ count: Int, seed: UInt64) -> [Double] {
    var random = SeededRandom(seed: seed)
    return (0..<count).map { _ in Double(random.nextUnitFloat()) - 0.5 }
  }

  static func maxDifference(_ a: [Double], _ b: [Double]) -> Double {
    zip(a, b).map { abs($0 - $1) }.max() ?? 0
  }

  @Test func svdOfAKnownMatrix() throws {
    // [[3, 0], [4, 5]]: XᵀX = [[25, 20], [20, 25]], eigenvalues 45 and 5.
    let (_, s, _) = try LAPACK.svd([3, 0, 4, 5], rows: 2, columns: 2, subject: "known")
    #expect(abs(s[0] - 45.0.squareRoot()) < 1e-12 && abs(s[1] - 5.0.squareRoot()) < 1e-12)
  }

  @Test(arguments: [(5, 3), (3, 5), (4, 4), (1, 6)])
  func svdReconstructsWithOrthonormalFactors(m: Int, n: Int) throws {
    let x = Self.random(m * n, seed: UInt64(m * 10 + n))
    let (u, s, vt) = try LAPACK.svd(x, rows: m, columns: n, subject: "test")
    let k = min(m, n)
    #expect(s.count == k && zip(s, s.dropFirst()).allSatisfy { $0 >= $1 } && s.allSatisfy { $0 >= 0 })
    var us = u
    for i in 0..<m { for j in 0..<k { us[i * k + j] *= s[j] } }
    #expect(Self.maxDifference(LAPACK.product(us, vt, m: m, n: n, k: k), x) < 1e-12)
    let identity = (0..<k * k).map { $0 / k == $0 % k ? 1.0 : 0.0 }
    #expect(Self.maxDifference(LAPACK.product(u, u, m: k, n: k, k: m, transposeA: true), identity) < 1e-12)
    #expect(Self.maxDifference(LAPACK.product(vt, vt, m: k, n: k, k: n, transposeB: true), identity) < 1e-12)
    // Each σ² is an eigenvalue of XᵀX: ‖X v‖ = σ for the matching right singular vector.
    for j in 0..<k {
      let v = Array(vt[(j * n)..<((j + 1) * n)])
      let xv = LAPACK.product(x, v, m: m, n: 1, k: n)
      #expect(abs(xv.reduce(0) { $0 + $1 * $1 }.squareRoot() - s[j]) < 1e-12)
    }
  }

  @Test func qrReconstructsWithUpperTriangularR() throws {
    let (m, n) = (7, 3)
    let x = Self.random(m * n, seed: 4)
    let (q, r) = try LAPACK.qr(x, rows: m, columns: n, subject: "test")
    #expect(Self.maxDifference(LAPACK.product(q, r, m: m, n: n, k: n), x) < 1e-12)
    for i in 0..<n { for j in 0..<i { #expect(r[i * n + j] == 0) } }
    let identity = (0..<n * n).map { $0 / n == $0 % n ? 1.0 : 0.0 }
    #expect(Self.maxDifference(LAPACK.product(q, q, m: n, n: n, k: m, transposeA: true), identity) < 1e-12)
  }

  @Test func productHonoursTransposes() {
    // A [2, 3], B [3, 2].
    let a: [Double] = [1, 2, 3, 4, 5, 6]
    let b: [Double] = [7, 8, 9, 10, 11, 12]
    #expect(LAPACK.product(a, b, m: 2, n: 2, k: 3) == [58, 64, 139, 154])
    // Aᵀ stored [3, 2] as the transpose of A, Bᵀ stored [2, 3].
    let at: [Double] = [1, 4, 2, 5, 3, 6]
    let bt: [Double] = [7, 9, 11, 8, 10, 12]
    #expect(
      LAPACK.product(at, bt, m: 2, n: 2, k: 3, transposeA: true, transposeB: true) == [58, 64, 139, 154])
  }

  @Test func errorNamesTheRoutineAndSubject() {
    let error = LAPACKError(
      routine: "dgesdd", info: 3, subject: "model.layers.0.self_attn.q_proj ΔW core [8, 8]")
    #expect(
      error.description
        == "LAPACK dgesdd failed on model.layers.0.self_attn.q_proj ΔW core [8, 8]: it did not converge (INFO = 3)"
    )
    #expect(
      LAPACKError(routine: "dgeqrf", info: -4, subject: "B").description.hasSuffix("argument 4 was rejected"))
  }
}
