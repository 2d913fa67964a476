import Foundation
import LoRAKernels
import LoRAModel
import Testing

@testable import LoRACheckpoint

/// A chain flattened into one adapter: its ΔW is exactly the chain's sum over the union of
/// their modules, it survives PEFT's format, and a node trained over its frozen ancestors
/// gives the logits of the base with the whole chain flattened. Drop an ancestor and it does
/// not.
@Suite struct AdapterChainTests {
  /// Grandparent (all linears, r 2), parent (q, v on layer 1, r 3, rsLoRA), node (o, down, r 2).
  static func chain(_ model: LlamaModel) throws -> [LoRAAdapter] {
    let configs = [
      LoRAConfig(r: 2, loraAlpha: 4, targetModules: ["all-linear"]),
      LoRAConfig(
        r: 3, loraAlpha: 5, targetModules: ["q_proj", "v_proj"], layersToTransform: [1], useRslora: true),
      LoRAConfig(r: 2, loraAlpha: 8, targetModules: ["o_proj", "down_proj"]),
    ]
    return try configs.enumerated().map { i, config in
      let adapter = try LoRAAdapter(config: config, model: model.config, seed: UInt64(i + 1))
      ExportFixtures.randomize(adapter, seed: UInt64(20 + i), scale: 0.3)
      return adapter
    }
  }

  @Test func flattenedDeltaIsTheExactSumOverTheUnion() throws {
    let (model, _) = try LlamaModel.load(path: ExportFixtures.path("tiny-tied"))
    let chain = try Self.chain(model)
    let flat = try AdapterChain.flatten(chain, model: model.config)
    let union = Set(chain.flatMap { $0.modules.map(\.name) })
    #expect(Set(flat.modules.map(\.name)) == union)
    for module in flat.modules {
      let present = chain.compactMap { $0.module(layer: module.layer, target: module.target) }
      #expect(module.rank == present.reduce(0) { $0 + $1.rank } && module.scale == 1, "\(module.name)")
      let sum = Tensor(zeros: [module.outFeatures, module.inFeatures])
      for m in present { sum.add(ExportFixtures.delta(m)) }
      let got = ExportFixtures.delta(module)
      #expect(
        ExportFixtures.maxDifference(got.values, sum.values) <= 1e-5 * ExportFixtures.maxAbs(sum.values))
    }
    // An ordinary adapter: PEFT's folder holds it (rank and alpha patterns) as it is.
    let folder = NSTemporaryDirectory() + "chain-\(UUID().uuidString)"
    try flat.savePEFT(to: folder, baseModel: "tiny")
    let loaded = try LoRAAdapter.loadPEFT(from: folder, model: model.config)
    #expect(loaded.parameters.values == flat.parameters.values)
    #expect(ExportFixtures.logits(model, adapter: loaded) == ExportFixtures.logits(model, adapter: flat))
  }

  @Test func aNodeOverItsFrozenAncestorsIsTheBaseWithTheFlattenedChain() throws {
    let (model, _) = try LlamaModel.load(path: ExportFixtures.path("tiny-tied"))
    let chain = try Self.chain(model)
    let node = chain[2]
    func logits(frozen: [LoRAAdapter]) throws -> [Float] {
      let tokens = ExportFixtures.tokens
      let (batch, length) = (tokens.count, tokens[0].count)
      let a = LlamaActivations(
        config: model.config, batch: batch, length: length, keepForBackward: false,
        slots: [
          .init(
            adapter: node, sequences: 0..<batch, frozen: try AdapterChain.flatten(frozen, model: model.config)
          )
        ])
      let out = Tensor(zeros: [batch * length, model.config.vocabularySize])
      model.logits(into: out, hidden: model.forward(tokens: tokens.flatMap { $0 }, activations: a))
      return out.values
    }
    let flattened = ExportFixtures.logits(
      model, adapter: try AdapterChain.flatten(chain, model: model.config))
    let tolerance = 1e-4 * ExportFixtures.maxAbs(flattened)
    #expect(ExportFixtures.maxDifference(try logits(frozen: [chain[0], chain[1]]), flattened) <= tolerance)
    // The mutation the tree's tests must catch: an ancestor left out of the chain.
    #expect(ExportFixtures.maxDifference(try logits(frozen: [chain[1]]), flattened) > 100 * tolerance)
    #expect(ExportFixtures.maxDifference(try logits(frozen: [chain[0]]), flattened) > 100 * tolerance)
  }

  @Test func aChainTooWideForAWeightIsRefused() throws {
    let (model, _) = try LlamaModel.load(path: ExportFixtures.path("tiny-tied"))
    let (out, input) = LoRATarget.q.shape(model.config)
    let wide = try LoRAAdapter(
      config: LoRAConfig(r: min(out, input), loraAlpha: 1, targetModules: ["q_proj"]), model: model.config,
      seed: 1)
    #expect(throws: AdapterCombine.CombineError.self) {
      try AdapterChain.flatten([wide, wide], model: model.config)
    }
    #expect(throws: AdapterCombine.CombineError.self) { try AdapterChain.flatten([], model: model.config) }
  }
}
