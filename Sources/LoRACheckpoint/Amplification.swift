import Foundation
import LoRAKernels

/// How an update relates to the frozen weight it adapts (Hu et al. 2021, section 7.3): the
/// paper projects W onto ΔW's own r-dimensional subspace, ‖Uᵀ·W·V‖_F (U, V: ΔW's left and
/// right singular vectors), and compares it with W's top-r directions and with random ones;
/// ‖ΔW‖_F over that projection is the amplification factor (about 21 for GPT-3's q at r=4:
/// the update amplifies directions W already has but does not emphasise).
public struct Amplification: Sendable, Codable, Equatable {
  /// ‖ΔW‖_F.
  public var deltaNorm: Double
  /// ‖Uᵀ·W·V‖_F with ΔW's own top-r directions.
  public var baseOnDeltaDirections: Double
  /// ‖U_Wᵀ·W·V_W‖_F with W's top-r directions (the most W has in r dimensions).
  public var baseOnItsTopDirections: Double
  /// ‖Uᵀ·W·V‖_F with r random orthonormal directions on each side.
  public var baseOnRandomDirections: Double
  /// ‖ΔW‖_F / ‖Uᵀ·W·V‖_F (nil when W has nothing in ΔW's directions).
  public var factor: Double?
  /// ‖U_Wᵀ·ΔW·V_W‖_F / ‖ΔW‖_F: the share of ΔW inside W's top-r directions (0 for a zero ΔW).
  public var deltaInBaseTopDirections: Double

  /// The measures for `delta` against the frozen weight w [OUT, IN] (row-major), with
  /// random directions drawn from `seed`.
  public init(_ delta: DeltaSVD, base w: [Double], seed: UInt64) throws(LAPACKError) {
    let (m, n, r) = (delta.outFeatures, delta.inFeatures, delta.rank)
    precondition(w.count == m * n, "\(delta.name): W has \(w.count) values for [\(m), \(n)]")
    deltaNorm = delta.squaredNorm.squareRoot()
    /// ‖Xᵀ·W·Y‖_F for x [OUT, r] and y [IN, r].
    func projected(_ x: [Double], _ y: [Double]) -> Double {
      let wy = LAPACK.product(w, y, m: m, n: r, k: n)
      let core = LAPACK.product(x, wy, m: r, n: r, k: m, transposeA: true)
      return core.reduce(0) { $0 + $1 * $1 }.squareRoot()
    }
    baseOnDeltaDirections = projected(delta.u, delta.v)
    let base = try LAPACK.svd(w, rows: m, columns: n, subject: "\(delta.name) frozen W [\(m), \(n)]")
    baseOnItsTopDirections = base.s.prefix(r).reduce(0) { $0 + $1 * $1 }.squareRoot()
    var random = SeededRandom(seed: seed)
    let randomLeft = try SubspaceSimilarity.randomBasis(rows: m, columns: r, random: &random)
    let randomRight = try SubspaceSimilarity.randomBasis(rows: n, columns: r, random: &random)
    baseOnRandomDirections = projected(randomLeft, randomRight)
    factor = baseOnDeltaDirections > 0 ? deltaNorm / baseOnDeltaDirections : nil
    // U_Wᵀ·ΔW·V_W = (U_Wᵀ·U) · Σ · (Vᵀ·V_W) with W's top-r directions.
    let k = min(r, base.s.count)
    var uw = [Double](repeating: 0, count: m * k)
    for i in 0..<m { for j in 0..<k { uw[i * k + j] = base.u[i * base.s.count + j] } }
    let vwT = Array(base.vt.prefix(k * n))  // [k, IN]
    var left = LAPACK.product(uw, delta.u, m: k, n: r, k: m, transposeA: true)  // [k, r]
    for i in 0..<k { for j in 0..<r { left[i * r + j] *= delta.values[j] } }
    let right = LAPACK.product(delta.v, vwT, m: r, n: k, k: n, transposeA: true, transposeB: true)  // [r, k]
    let inside = LAPACK.product(left, right, m: k, n: k, k: r).reduce(0) { $0 + $1 * $1 }.squareRoot()
    deltaInBaseTopDirections = deltaNorm > 0 ? inside / deltaNorm : 0
  }
}
