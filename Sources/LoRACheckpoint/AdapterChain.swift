import Foundation
import LoRAKernels
import LoRAModel

/// A chain of adapters (a tree node's ancestors, root first, perhaps the node itself) as one
/// ordinary adapter whose ΔW is exactly their sum: each module concatenates the ranks of the
/// adapters that adapt it (A rows sᵢ·Aᵢ, B columns Bᵢ, scale 1), as `combine --method cat`
/// does, but over the union of their modules. A module of the union that no adapter of the
/// chain adapts (the targets × layers grid has holes when their targets or layers differ)
/// gets rank 1 with B = 0: ΔW stays exactly the sum.
public enum AdapterChain {
  /// The flattened chain.
  /// - Throws: `AdapterCombine.CombineError` for an empty chain or a module whose summed
  ///   rank exceeds its weight's smaller side.
  public static func flatten(_ chain: [LoRAAdapter], model: LlamaConfig) throws -> LoRAAdapter {
    guard let first = chain.first else {
      throw AdapterCombine.CombineError("a chain needs at least one adapter")
    }
    for adapter in chain {
      try adapter.requireNoDoRA("a tree's ancestor chain", instead: "train the tree's nodes as plain LoRA")
    }
    let targets = LoRATarget.allCases.filter { t in chain.contains { $0.modules.contains { $0.target == t } }
    }
    let layers = Set(chain.flatMap { $0.modules.map(\.layer) }).sorted()
    var ranks: [String: Int] = [:]
    var alphas: [String: Double] = [:]
    for layer in layers {
      for target in targets {
        let present = chain.compactMap { $0.module(layer: layer, target: target) }
        let rank = max(1, present.reduce(0) { $0 + $1.rank })
        let (out, input) = target.shape(model)
        let name = target.moduleName(layer: layer)
        guard rank <= min(out, input) else {
          throw AdapterCombine.CombineError(
            "the chain's ranks add up to \(rank) for \(name), above what its \(out)×\(input) weight allows")
        }
        (ranks[name], alphas[name]) = (rank, Double(rank))
      }
    }
    let config = LoRAConfig(
      r: ranks.values.max() ?? 1, loraAlpha: Double(ranks.values.max() ?? 1),
      loraDropout: first.config.loraDropout,
      targetModules: targets.map(\.rawValue), layersToTransform: layers.count == model.layers ? nil : layers,
      rankPattern: ranks, alphaPattern: alphas, initialization: "zero")
    let result = try LoRAAdapter(config: config, model: model, seed: 0)
    for module in result.modules {
      let present = chain.compactMap { $0.module(layer: module.layer, target: module.target) }
      guard !present.isEmpty else { continue }  // a hole: A and B stay zero
      _ = try AdapterCombine.fill(
        module, from: present, options: .init(method: .cat, weights: present.map { _ in 1 }), seed: 0)
    }
    return result
  }
}
