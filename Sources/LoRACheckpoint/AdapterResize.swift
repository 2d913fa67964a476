import Foundation
import LoRAKernels
import LoRAModel

/// An adapter at another rank. Shrinking keeps the top singular directions of each ΔW
/// (truncated SVD through `DeltaSVD`); growing appends new directions that start at zero in
/// B (A's new rows drawn as a fresh adapter's are), so the model's output is unchanged and
/// training can go on. Each module keeps its scale s: alpha moves with r (alpha·r′/r, or
/// alpha·√(r′/r) with rsLoRA), so a grown adapter's B is the old B, bit for bit.
public enum AdapterResize {
  /// The rank asked for: one rank for every module, or per module the fewest directions
  /// keeping a share of ‖ΔW‖²_F (shrinking only).
  public enum Target: Sendable, Equatable {
    case rank(Int)
    case energy(Double)
  }

  /// What happened to one module.
  public struct Change: Sendable, Codable, Equatable {
    public var name: String
    public var from: Int
    public var to: Int
    /// The share of ‖ΔW‖²_F kept (1 when growing or keeping the rank).
    public var energyKept: Double
  }

  /// Why a resize cannot be done.
  public struct ResizeError: Error, Equatable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
  }

  /// `adapter` (on a model of `model`'s shape) at `target`; new A rows come from `seed`.
  /// - Throws: `ResizeError` for a rank below 1 or above a module's smaller side, or an
  ///   energy outside (0, 1]; `LAPACKError` naming the module when an SVD fails.
  public static func resized(
    _ adapter: LoRAAdapter, model: LlamaConfig, to target: Target, seed: UInt64 = 0
  ) throws -> (adapter: LoRAAdapter, changes: [Change]) {
    try adapter.requireNoVirtualTokens(
      "resizing", instead: "resize an adapter without prompt or prefix tuning")
    try adapter.requireNoDoRA("resizing", instead: "train it again at the rank you want")
    var plans: [(module: LoRAAdapter.Module, rank: Int, svd: DeltaSVD?)] = []
    for module in adapter.modules {
      switch target {
      case .rank(let rank):
        let limit = min(module.outFeatures, module.inFeatures)
        guard rank >= 1 && rank <= limit else {
          throw ResizeError(
            "rank \(rank) is not possible for \(module.name): it must be between 1 and \(limit) "
              + "(its weight is \(module.outFeatures)×\(module.inFeatures))")
        }
        plans.append((module, rank, rank < module.rank ? try DeltaSVD(module) : nil))
      case .energy(let fraction):
        guard fraction > 0 && fraction <= 1 else {
          throw ResizeError("--energy must be in (0, 1], got \(fraction)")
        }
        let svd = try DeltaSVD(module)
        plans.append((module, svd.rank(keeping: fraction), svd))
      }
    }
    let config = try resizedConfig(adapter.config, plans.map { ($0.module, $0.rank) })
    let resized = try LoRAAdapter(config: config, model: model, seed: seed)
    var changes: [Change] = []
    for (old, rank, svd) in plans {
      guard let new = resized.module(layer: old.layer, target: old.target) else {
        throw ResizeError("\(old.name) is missing from the resized adapter")
      }
      precondition(new.rank == rank && abs(Double(new.scale) - Double(old.scale)) <= 1e-6 * Double(old.scale))
      var kept = 1.0
      if let svd, rank < old.rank {
        kept = svd.energy(top: rank)
        write(svd, rank: rank, scale: Double(new.scale), into: new)
      } else {
        // The old directions first, the new ones (A drawn, B zero) after.
        let common = min(rank, old.rank)
        for i in 0..<common {
          for j in 0..<old.inFeatures { new.a[i * old.inFeatures + j] = old.a[i * old.inFeatures + j] }
        }
        for i in 0..<old.outFeatures {
          for j in 0..<rank { new.b[i * rank + j] = j < common ? old.b[i * old.rank + j] : 0 }
        }
      }
      changes.append(Change(name: old.name, from: old.rank, to: rank, energyKept: kept))
    }
    return (resized, changes)
  }

  /// B [OUT, k] = U_k·√(Σ_k / s) and A [k, IN] = √(Σ_k / s)·V_kᵀ, so s·B·A is the rank-k
  /// truncation of ΔW.
  static func write(_ svd: DeltaSVD, rank k: Int, scale: Double, into module: LoRAAdapter.Module) {
    let (out, input, r) = (svd.outFeatures, svd.inFeatures, svd.rank)
    for j in 0..<k {
      let factor = (svd.values[j] / scale).squareRoot()
      for i in 0..<out { module.b[i * k + j] = Float(svd.u[i * r + j] * factor) }
      for i in 0..<input { module.a[j * input + i] = Float(svd.v[i * r + j] * factor) }
    }
  }

  /// `config` with each module at its new rank and the alpha that keeps its scale: the
  /// commonest (rank, alpha) becomes r and lora_alpha, the others go to rank_pattern and
  /// alpha_pattern under the module's full name.
  static func resizedConfig(_ config: LoRAConfig, _ modules: [(LoRAAdapter.Module, Int)]) throws -> LoRAConfig
  {
    var resized = config
    let pairs = modules.map { module, rank -> (name: String, rank: Int, alpha: Double) in
      let ratio = Double(rank) / Double(module.rank)
      return (module.name, rank, module.alpha * (config.useRslora ? ratio.squareRoot() : ratio))
    }
    var counts: [String: (count: Int, rank: Int, alpha: Double)] = [:]
    for pair in pairs {
      let key = "\(pair.rank) \(pair.alpha)"
      counts[key, default: (0, pair.rank, pair.alpha)].count += 1
    }
    guard let common = counts.values.max(by: { ($0.count, -$0.rank) < ($1.count, -$1.rank) }) else {
      throw ResizeError("the adapter has no module")
    }
    resized.r = common.rank
    resized.loraAlpha = common.alpha
    resized.rankPattern = [:]
    resized.alphaPattern = [:]
    for pair in pairs where pair.rank != common.rank || pair.alpha != common.alpha {
      resized.rankPattern[pair.name] = pair.rank
      resized.alphaPattern[pair.name] = pair.alpha
    }
    return resized
  }
}
