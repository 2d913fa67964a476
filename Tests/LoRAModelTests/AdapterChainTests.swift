import Foundation
import LoRAKernels
import Testing

@testable import LoRAModel

/// A tree node's frozen chain applied unmerged equals the same ΔW merged into a copy of the
/// base: loss, the node's gradients and generation through a KV cache; a fused neighbour
/// without a chain is untouched by it.
@Suite struct AdapterChainTests {
  /// An adapter with a random nonzero B (a trained one, as far as the model can tell).
  static func trained(_ config: LoRAConfig, _ model: LlamaModel, seed: UInt64) throws -> LoRAAdapter {
    let adapter = try LoRAAdapter(config: config, model: model.config, seed: seed)
    var random = SeededRandom(seed: seed &+ 100)
    for m in adapter.modules { for j in 0..<m.b.count { m.b[j] = (random.nextUnitFloat() - 0.5) * 0.4 } }
    return adapter
  }

  /// `model` with `adapter` merged into private copies of its weights.
  static func merged(_ model: LlamaModel, _ adapter: LoRAAdapter) -> LlamaModel {
    let weights = LlamaWeights(copying: model.weights, writable: Set(LoRATarget.allCases))
    for m in adapter.modules {
      LowRank.merge(into: weights.layers[m.layer].matrix(m.target).f32!, a: m.a, b: m.b, scale: m.scale)
    }
    return LlamaModel(config: model.config, weights: weights)
  }

  /// Loss and gradients of `adapter` (slot of `sequences`) under `model`.
  static func lossAndGradients(
    _ model: LlamaModel, _ slots: [LlamaActivations.Slot], tokens: [Int32], targets: [Int32], length: Int,
    checkpointed: Bool
  ) -> (losses: [Double], gradients: [[Float]]) {
    let batch = tokens.count / length
    let a = LlamaActivations(
      config: model.config, batch: batch, length: length, keepForBackward: true, slots: slots,
      checkpointed: checkpointed)
    a.dropoutSeeds = slots.indices.map { UInt64(5 + $0) }
    let g = LlamaGradients(config: model.config, batch: batch, length: length, maxRank: 4)
    for slot in slots { slot.adapter.gradients.zero() }
    model.forward(tokens: tokens, activations: a)
    let results = model.backward(
      targets: targets, activations: a, gradients: g, gradientScales: slots.map { _ in 1 })
    return (results.map(\.lossSum), slots.map { $0.adapter.gradients.values })
  }

  static func close(_ x: [Float], _ y: [Float], _ tolerance: Double = 1e-5) -> Bool {
    let size = x.map { Double(abs($0)) }.max() ?? 0
    let difference = zip(x, y).map { Double(abs($0 - $1)) }.max() ?? 0
    return size > 0 && difference <= tolerance * size
  }

  @Test(arguments: [(0.0, false), (0.2, false), (0.0, true)])
  func unmergedChainEqualsTheMergedBase(dropout: Double, checkpointed: Bool) throws {
    let (model, _) = try LlamaModel.load(path: Fixtures.path("tiny-qwen2"))
    let chain = try Self.trained(
      LoRAConfig(r: 3, loraAlpha: 6, targetModules: ["all-linear"]), model, seed: 1)
    let child = try Self.trained(
      LoRAConfig(r: 2, loraAlpha: 4, loraDropout: dropout, targetModules: ["q_proj", "v_proj", "down_proj"]),
      model, seed: 2)
    let neighbour = try Self.trained(
      LoRAConfig(r: 2, loraAlpha: 2, targetModules: ["o_proj"]), model, seed: 3)
    let length = 6
    var random = SeededRandom(seed: 9)
    let tokens: [Int32] = (0..<(3 * length)).map { _ in Int32(random.next() % 96) }
    var targets = [Int32](repeating: -1, count: tokens.count)
    for i in 0..<(tokens.count - 1) where (i + 1) % length != 0 && i % length > 0 {
      targets[i] = tokens[i + 1]
    }

    // Fused: the child with its chain on sequences 0..<2, the neighbour alone on 2.
    let fused = Self.lossAndGradients(
      model,
      [.init(adapter: child, sequences: 0..<2, frozen: chain), .init(adapter: neighbour, sequences: 2..<3)],
      tokens: tokens, targets: targets, length: length, checkpointed: checkpointed)
    // The child alone over the merged base, and the neighbour alone over the base.
    let rows = 2 * length
    let merged = Self.lossAndGradients(
      Self.merged(model, chain), [.init(adapter: child, sequences: 0..<2)], tokens: Array(tokens[..<rows]),
      targets: Array(targets[..<rows]), length: length, checkpointed: false)
    let alone = Self.lossAndGradients(
      model, [.init(adapter: neighbour, sequences: 0..<1)], tokens: Array(tokens[rows...]),
      targets: Array(targets[rows...]), length: length, checkpointed: false)
    #expect(abs(fused.losses[0] - merged.losses[0]) <= 1e-5 * abs(merged.losses[0]))
    #expect(Self.close(fused.gradients[0], merged.gradients[0]), "the child's gradients differ")
    #expect(abs(fused.losses[1] - alone.losses[0]) <= 1e-5 * abs(alone.losses[0]))
    #expect(Self.close(fused.gradients[1], alone.gradients[0]), "the neighbour's gradients differ")
    // The chain matters: without it the child sees another model.
    let bare = Self.lossAndGradients(
      model, [.init(adapter: child, sequences: 0..<2)], tokens: Array(tokens[..<rows]),
      targets: Array(targets[..<rows]), length: length, checkpointed: false)
    #expect(abs(bare.losses[0] - merged.losses[0]) > 1e-3 * abs(merged.losses[0]))
  }

  /// Generation through a KV cache: the chain is applied to the cached keys and values too.
  @Test func cachedDecodingWithAChainEqualsTheMergedBase() throws {
    let (model, _) = try LlamaModel.load(path: Fixtures.path("tiny-qwen2"))
    let chain = try Self.trained(
      LoRAConfig(r: 3, loraAlpha: 6, targetModules: ["all-linear"]), model, seed: 4)
    let child = try Self.trained(
      LoRAConfig(r: 2, loraAlpha: 4, targetModules: ["k_proj", "v_proj"]), model, seed: 5)
    let tokens: [Int32] = [3, 17, 42, 8, 64, 5]
    func hidden(_ model: LlamaModel, _ frozen: LoRAAdapter?) -> [Float] {
      let cache = KVCache(config: model.config, batch: 1, capacity: tokens.count)
      var out: [Float] = []
      for (i, token) in tokens.enumerated() {
        let a = LlamaActivations(
          config: model.config, batch: 1, length: 1, keepForBackward: false, keys: tokens.count,
          slots: [.init(adapter: child, sequences: 0..<1, frozen: frozen)])
        out += model.forward(tokens: [token], activations: a, cache: cache).values
        #expect(cache.length == i + 1)
      }
      return out
    }
    #expect(Self.close(hidden(model, chain), hidden(Self.merged(model, chain), nil)))
  }
}
