import Foundation
import LoRAKernels

/// The LoRA paper's normalized subspace similarity (Hu et al. 2021, section 7.2) between the
/// top singular directions of two updates of the same module:
/// φ(i, j) = ‖V₁[:, :i]ᵀ · V₂[:, :j]‖²_F / min(i, j), in [0, 1]: 1 when the smaller span lies
/// inside the larger, 0 when they are orthogonal. For two random i- and j-dimensional
/// subspaces of ℝ^N its expectation is max(i, j) / N.
public struct SubspaceSimilarity: Sendable, Codable, Equatable {
  /// Right singular vectors (the input space, A's row space) or left ones (the output space).
  public enum Side: String, Sendable, Codable { case right, left }

  public var side: Side
  /// φ(i, j) for i = 1…I (rows) and j = 1…J (columns): [I][J].
  public var phi: [[Double]]

  /// φ between the top `maxI` directions of `first` and the top `maxJ` of `second`.
  public init(_ first: DeltaSVD, _ second: DeltaSVD, side: Side = .right, maxI: Int, maxJ: Int) {
    precondition(first.inFeatures == second.inFeatures && first.outFeatures == second.outFeatures)
    let (n, x, y) =
      side == .right
      ? (first.inFeatures, first.rightVectors(maxI), second.rightVectors(maxJ))
      : (first.outFeatures, first.leftVectors(maxI), second.leftVectors(maxJ))
    self.init(side: side, x: x, y: y, dimension: n, maxI: maxI, maxJ: maxJ)
  }

  /// φ between the columns of x [N, I] and y [N, J] (orthonormal columns).
  init(side: Side, x: [Double], y: [Double], dimension n: Int, maxI: Int, maxJ: Int) {
    precondition(maxI >= 1 && maxJ >= 1, "φ needs at least one direction on each side")
    self.side = side
    let g = LAPACK.product(x, y, m: maxI, n: maxJ, k: n, transposeA: true)
    // Prefix sums of G²: s[i][j] = Σ_{a<i, b<j} G[a][b]².
    var sums = [[Double]](repeating: [Double](repeating: 0, count: maxJ + 1), count: maxI + 1)
    for i in 1...maxI {
      for j in 1...maxJ {
        let value = g[(i - 1) * maxJ + (j - 1)]
        sums[i][j] = sums[i - 1][j] + sums[i][j - 1] - sums[i - 1][j - 1] + value * value
      }
    }
    phi = (1...maxI).map { i in (1...maxJ).map { j in min(1, sums[i][j] / Double(min(i, j))) } }
  }

  /// The same measure between random Gaussian subspaces of ℝ^`dimension` (the row spaces of
  /// i×N and j×N Gaussian matrices, as the paper's baseline), drawn from `seed`.
  public static func randomBaseline(
    dimension n: Int, maxI: Int, maxJ: Int, side: Side = .right, seed: UInt64
  ) throws(LAPACKError) -> SubspaceSimilarity {
    var random = SeededRandom(seed: seed)
    let x = try randomBasis(rows: n, columns: maxI, random: &random)
    let y = try randomBasis(rows: n, columns: maxJ, random: &random)
    return SubspaceSimilarity(side: side, x: x, y: y, dimension: n, maxI: maxI, maxJ: maxJ)
  }

  /// `columns` orthonormal columns [rows, columns] spanning a Gaussian matrix's columns.
  static func randomBasis(rows: Int, columns: Int, random: inout SeededRandom) throws(LAPACKError) -> [Double]
  {
    var g = [Double](repeating: 0, count: rows * columns)
    for index in g.indices { g[index] = gaussian(&random) }
    return try LAPACK.qr(g, rows: rows, columns: columns, subject: "random [\(rows), \(columns)] directions")
      .q
  }

  /// A standard normal draw (Box–Muller).
  static func gaussian(_ random: inout SeededRandom) -> Double {
    let u1 = max(Double(random.next() >> 11) / Double(1 << 53), .leastNonzeroMagnitude)
    let u2 = Double(random.next() >> 11) / Double(1 << 53)
    return (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)
  }
}
