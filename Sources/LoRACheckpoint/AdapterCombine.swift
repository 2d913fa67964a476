import Foundation
import LoRAKernels
import LoRAModel

/// Adapters → one adapter, computed on each module's ΔW = s·B·A and never on A and B apart
/// (PEFT's `add_weighted_adapter` "linear" mode sums A's and B's separately and gets cross
/// terms). The result has scale 1 (lora_alpha = r), as PEFT's combined adapters do.
///
/// - `cat`: the exact Σ wᵢ·ΔWᵢ with the ranks concatenated: A = [wᵢ·sᵢ·Aᵢ] stacked, B = [Bᵢ]
///   side by side (PEFT's "cat", element for element).
/// - `svd`: Σ wᵢ·ΔWᵢ cut to `rank` by truncated SVD (B = U·Σ, A = Vᵀ, as PEFT's "svd");
///   exact when `rank` reaches the sum's rank.
/// - `ties`: each ΔWᵢ keeps its `density` largest entries by magnitude, the sign of each
///   entry is elected by the sum of the pruned updates, and the weighted entries that agree
///   with it are averaged; then cut to `rank` (PEFT's "ties_svd").
/// - `dareLinear`, `dareTies`: each ΔWᵢ keeps a seeded random `density` of its entries,
///   rescaled by 1/density; then summed with weights, or merged as TIES; then cut to `rank`
///   (PEFT's "dare_linear_svd" and "dare_ties_svd", with our seeded generator).
public enum AdapterCombine {
  public enum Method: String, Sendable, Codable, CaseIterable {
    case cat, svd, ties
    case dareLinear = "dare_linear"
    case dareTies = "dare_ties"
  }

  public struct Options: Sendable {
    public var method: Method
    /// One weight per adapter.
    public var weights: [Double]
    /// The result's rank for every method but `cat` (nil: the largest rank of the inputs).
    public var rank: Int?
    /// The share of entries TIES and DARE keep, in (0, 1].
    public var density: Double
    /// Seed of DARE's random pruning.
    public var seed: UInt64
    /// Leave out modules that not every adapter adapts instead of refusing them.
    public var skipMissing: Bool

    public init(
      method: Method, weights: [Double], rank: Int? = nil, density: Double = 1, seed: UInt64 = 0,
      skipMissing: Bool = false
    ) {
      (self.method, self.weights, self.rank, self.density, self.seed, self.skipMissing) =
        (method, weights, rank, density, seed, skipMissing)
    }
  }

  /// Why adapters cannot be combined as asked.
  public struct CombineError: Error, Equatable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
  }

  /// What the combination did per module.
  public struct Module: Sendable, Codable, Equatable {
    public var name: String
    public var rank: Int
    /// The share of the combined update's ‖·‖²_F the result keeps (1 for `cat`).
    public var energyKept: Double
  }

  /// The combination of `adapters` (all on a model of `model`'s shape) by `options`.
  /// - Returns: the adapter, each module's rank and energy kept, and the modules left out.
  /// - Throws: `CombineError` for weights that do not match the adapters, a density outside
  ///   (0, 1], a rank above the possible, or modules that differ (unless `skipMissing`);
  ///   `LAPACKError` naming the module when an SVD fails.
  public static func combine(_ adapters: [LoRAAdapter], model: LlamaConfig, options: Options) throws -> (
    adapter: LoRAAdapter, modules: [Module], leftOut: [String]
  ) {
    for adapter in adapters {
      try adapter.requireNoVirtualTokens(
        "combining", instead: "combine adapters without prompt or prefix tuning")
      try adapter.requireNoDoRA("combining", instead: "merge it into a model with merge instead")
    }
    try check(adapters, options)
    let (targets, layers, leftOut) = try commonModules(adapters, skipMissing: options.skipMissing)
    // The rank of each module of the result.
    func sources(_ layer: Int, _ target: LoRATarget) -> [LoRAAdapter.Module] {
      adapters.map { $0.module(layer: layer, target: target)! }
    }
    let anyModule = sources(layers[0], targets[0])
    let rank =
      options.method == .cat
      ? anyModule.reduce(0) { $0 + $1.rank } : options.rank ?? anyModule.map(\.rank).max()!
    for layer in layers {
      for target in targets {
        let (out, input) = target.shape(model)
        let name = sources(layer, target)[0].name
        let needed = options.method == .cat ? sources(layer, target).reduce(0) { $0 + $1.rank } : rank
        guard needed <= min(out, input), needed >= 1 else {
          throw CombineError(
            "rank \(needed) is not possible for \(name): it must be between 1 and \(min(out, input)) "
              + "(its weight is \(out)×\(input))\(options.method == .cat ? "; cat adds the ranks, use svd to cut them" : "")"
          )
        }
      }
    }
    let first = adapters[0].config
    let config = LoRAConfig(
      r: rank, loraAlpha: Double(rank), loraDropout: first.loraDropout,
      targetModules: targets.map(\.rawValue), layersToTransform: layers.count == model.layers ? nil : layers,
      initialization: "zero")
    let result = try LoRAAdapter(config: config, model: model, seed: 0)
    var report: [Module] = []
    for (index, module) in result.modules.enumerated() {
      let inputs = sources(module.layer, module.target)
      let kept = try fill(module, from: inputs, options: options, seed: options.seed &+ UInt64(index))
      report.append(Module(name: module.name, rank: module.rank, energyKept: kept))
    }
    return (result, report, leftOut)
  }

  static func check(_ adapters: [LoRAAdapter], _ options: Options) throws {
    guard adapters.count >= 1 else { throw CombineError("give at least one adapter") }
    guard options.weights.count == adapters.count else {
      throw CombineError(
        "\(options.weights.count) weights for \(adapters.count) adapters: give one weight per adapter")
    }
    guard options.weights.allSatisfy(\.isFinite), options.weights.contains(where: { $0 != 0 }) else {
      throw CombineError("the weights must be finite numbers, not all zero: \(options.weights)")
    }
    if [.ties, .dareLinear, .dareTies].contains(options.method) {
      guard options.density > 0 && options.density <= 1 else {
        throw CombineError("--density must be in (0, 1], got \(options.density)")
      }
    }
    if let rank = options.rank {
      guard options.method != .cat else {
        throw CombineError("cat keeps every rank; --rank applies to the other methods")
      }
      guard rank >= 1 else { throw CombineError("--rank must be at least 1, got \(rank)") }
    }
  }

  /// The targets and layers every adapter adapts; with `skipMissing`, the names of the
  /// modules left out. The common modules must be every target on every common layer.
  static func commonModules(_ adapters: [LoRAAdapter], skipMissing: Bool) throws -> (
    targets: [LoRATarget], layers: [Int], leftOut: [String]
  ) {
    let sets = adapters.map { Set($0.modules.map(\.name)) }
    let all = sets.reduce(Set<String>()) { $0.union($1) }
    let common = sets.reduce(all) { $0.intersection($1) }
    let differing = all.subtracting(common).sorted(by: AdapterAnalysis.moduleOrder)
    if !differing.isEmpty && !skipMissing {
      let named = differing.prefix(6).map { name in
        let holders = sets.indices.filter { sets[$0].contains(name) }.map { "\($0 + 1)" }
        return "\(name) (only in adapter \(holders.joined(separator: ", ")))"
      }
      throw CombineError(
        "the adapters do not adapt the same modules: \(named.joined(separator: "; "))"
          + (differing.count > 6 ? " and \(differing.count - 6) more" : "")
          + "; pass --skip-missing to combine only the modules they share")
    }
    let shared = adapters[0].modules.filter { common.contains($0.name) }
    guard !shared.isEmpty else { throw CombineError("the adapters share no module") }
    let targets = Array(Set(shared.map(\.target))).sorted()
    let layers = Array(Set(shared.map(\.layer))).sorted()
    guard shared.count == targets.count * layers.count else {
      throw CombineError(
        "the modules the adapters share are not the same targets on the same layers, "
          + "which one adapter configuration cannot express")
    }
    return (targets, layers, differing)
  }
}
