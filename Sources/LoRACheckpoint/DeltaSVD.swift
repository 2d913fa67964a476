import Foundation
import LoRAKernels
import LoRAModel

/// The singular value decomposition of one module's update ΔW = s·B·A [OUT, IN], computed
/// through its R×R core and never as the OUT×IN matrix: with B = Q_B·R_B and Aᵀ = Q_A·R_A
/// (thin QR), ΔW = Q_B · (s·R_B·R_Aᵀ) · Q_Aᵀ, so the SVD of the core C = U_c·Σ·V_cᵀ gives
/// ΔW = (Q_B·U_c) · Σ · (Q_A·V_c)ᵀ. Double precision throughout.
public struct DeltaSVD: Sendable {
  /// The module's Hugging Face name, e.g. "model.layers.3.self_attn.q_proj".
  public let name: String
  public let outFeatures: Int
  public let inFeatures: Int
  /// Singular values, descending: [R].
  public let values: [Double]
  /// Left singular vectors as columns: [OUT, R], row-major.
  public let u: [Double]
  /// Right singular vectors as columns: [IN, R], row-major.
  public let v: [Double]

  /// R, the number of singular values (the module's rank).
  public var rank: Int { values.count }

  /// The decomposition of `module`'s ΔW.
  public init(_ module: LoRAAdapter.Module) throws(LAPACKError) {
    try self.init(
      a: module.a.values.map(Double.init), b: module.b.values.map(Double.init), scale: Double(module.scale),
      rank: module.rank, inFeatures: module.inFeatures, outFeatures: module.outFeatures, name: module.name)
  }

  /// The decomposition of s·B·A with a [R, IN] and b [OUT, R], row-major.
  public init(
    a: [Double], b: [Double], scale: Double, rank r: Int, inFeatures: Int, outFeatures: Int, name: String
  ) throws(LAPACKError) {
    precondition(a.count == r * inFeatures && b.count == outFeatures * r, "\(name): A and B shapes")
    self.name = name
    self.outFeatures = outFeatures
    self.inFeatures = inFeatures
    let (qb, rb) = try LAPACK.qr(
      b, rows: outFeatures, columns: r, subject: "\(name) B [\(outFeatures), \(r)]")
    var at = [Double](repeating: 0, count: inFeatures * r)
    for i in 0..<r { for j in 0..<inFeatures { at[j * r + i] = a[i * inFeatures + j] } }
    let (qa, ra) = try LAPACK.qr(
      at, rows: inFeatures, columns: r, subject: "\(name) Aᵀ [\(inFeatures), \(r)]")
    // C [R, R] = s · R_B · R_Aᵀ
    let core = LAPACK.product(rb, ra, m: r, n: r, k: r, transposeB: true).map { $0 * scale }
    let (uc, sigma, vct) = try LAPACK.svd(core, rows: r, columns: r, subject: "\(name) ΔW core [\(r), \(r)]")
    values = sigma
    u = LAPACK.product(qb, uc, m: outFeatures, n: r, k: r)
    v = LAPACK.product(qa, vct, m: inFeatures, n: r, k: r, transposeB: true)
  }

  /// ‖ΔW‖_F² = Σ σ².
  public var squaredNorm: Double { values.reduce(0) { $0 + $1 * $1 } }

  /// The share of ‖ΔW‖_F² in the top `k` singular values (1 when ΔW is zero).
  public func energy(top k: Int) -> Double {
    let total = squaredNorm
    guard total > 0 else { return 1 }
    return values.prefix(k).reduce(0) { $0 + $1 * $1 } / total
  }

  /// The fewest singular values that keep at least `fraction` of ‖ΔW‖_F² (at least 1).
  public func rank(keeping fraction: Double) -> Int {
    let total = squaredNorm
    guard total > 0 else { return 1 }
    var kept = 0.0
    for (i, sigma) in values.enumerated() {
      kept += sigma * sigma
      if kept >= fraction * total * (1 - 1e-12) { return i + 1 }
    }
    return rank
  }

  /// Roy and Vetterli's effective rank: exp of the entropy of σ / Σσ (between 1 and R; 0
  /// for a zero ΔW).
  public var effectiveRank: Double {
    let total = values.reduce(0, +)
    guard total > 0 else { return 0 }
    var entropy = 0.0
    for sigma in values where sigma > 0 {
      let p = sigma / total
      entropy -= p * Foundation.log(p)
    }
    return Foundation.exp(entropy)
  }

  /// The stable rank ‖ΔW‖_F² / σ₁² (between 1 and R; 0 for a zero ΔW).
  public var stableRank: Double {
    guard let first = values.first, first > 0 else { return 0 }
    return squaredNorm / (first * first)
  }

  /// The top `k` right singular vectors as columns: [IN, k].
  public func rightVectors(_ k: Int) -> [Double] { columns(of: v, rows: inFeatures, count: k) }

  /// The top `k` left singular vectors as columns: [OUT, k].
  public func leftVectors(_ k: Int) -> [Double] { columns(of: u, rows: outFeatures, count: k) }

  /// ΔW itself, [OUT, IN] (for tests and small modules).
  public func dense() -> [Double] {
    var us = u
    for i in 0..<outFeatures { for j in 0..<rank { us[i * rank + j] *= values[j] } }
    return LAPACK.product(us, v, m: outFeatures, n: inFeatures, k: rank, transposeB: true)
  }

  private func columns(of matrix: [Double], rows: Int, count k: Int) -> [Double] {
    precondition(k >= 0 && k <= rank, "\(k) of \(rank) singular vectors")
    var out = [Double](repeating: 0, count: rows * k)
    for i in 0..<rows { for j in 0..<k { out[i * k + j] = matrix[i * rank + j] } }
    return out
  }
}
