import Foundation
import LoRAKernels
import Testing

@testable import LoRAModel

/// Several adapters in one batch (fused training): each adapter's loss and gradients from
/// the stacked pass equal those of a pass with that adapter alone on its own sequences.
@Suite struct FusedSlotsTests {
  @Test(arguments: [0.0, 0.2])
  func stackedPassEqualsSeparatePasses(dropout: Double) throws {
    let (model, _) = try LlamaModel.load(path: Fixtures.path("tiny-qwen2"))
    var random = SeededRandom(seed: 3)
    // Different ranks, targets and layers per adapter.
    let configs = [
      LoRAConfig(r: 2, loraAlpha: 4, loraDropout: dropout, targetModules: ["all-linear"]),
      LoRAConfig(r: 4, loraAlpha: 8, loraDropout: dropout, targetModules: ["q_proj", "v_proj"]),
      LoRAConfig(r: 3, loraAlpha: 3, targetModules: ["down_proj"], layersToTransform: [1]),
    ]
    let adapters = try configs.enumerated().map { i, config in
      let adapter = try LoRAAdapter(config: config, model: model.config, seed: UInt64(10 + i))
      for m in adapter.modules { for j in 0..<m.b.count { m.b[j] = (random.nextUnitFloat() - 0.5) * 0.4 } }
      return adapter
    }
    let sequences = [2, 1, 2]  // per adapter
    let length = 7
    let batch = sequences.reduce(0, +)
    let tokens: [Int32] = (0..<(batch * length)).map { _ in Int32(random.next() % 96) }
    var targets = [Int32](repeating: -1, count: batch * length)
    for b in 0..<batch { for t in 1..<(length - 1) { targets[b * length + t] = tokens[b * length + t + 1] } }
    let scales: [Float] = [0.5, 0.25, 1]
    let seeds: [UInt64] = [7, 8, 9]

    // Stacked.
    var slots: [LlamaActivations.Slot] = []
    var start = 0
    for (adapter, count) in zip(adapters, sequences) {
      slots.append(.init(adapter: adapter, sequences: start..<start + count))
      start += count
    }
    let fused = LlamaActivations(
      config: model.config, batch: batch, length: length, keepForBackward: true, slots: slots)
    fused.dropoutSeeds = seeds
    let g = LlamaGradients(config: model.config, batch: batch, length: length, maxRank: 4)
    for adapter in adapters { adapter.gradients.zero() }
    model.forward(tokens: tokens, activations: fused)
    let stacked = model.backward(targets: targets, activations: fused, gradients: g, gradientScales: scales)
    let stackedGradients = adapters.map { $0.gradients.values }

    // Each alone.
    for (k, slot) in slots.enumerated() {
      let rows = slot.sequences.lowerBound * length..<slot.sequences.upperBound * length
      let alone = LlamaActivations(
        config: model.config, batch: slot.sequences.count, length: length, keepForBackward: true,
        adapter: adapters[k])
      alone.dropoutSeed = seeds[k]
      let ga = LlamaGradients(config: model.config, batch: slot.sequences.count, length: length, maxRank: 4)
      adapters[k].gradients.zero()
      model.forward(tokens: Array(tokens[rows]), activations: alone)
      let (sum, count) = model.backward(
        targets: Array(targets[rows]), activations: alone, gradients: ga, gradientScale: scales[k])
      #expect(count == stacked[k].count)
      #expect(
        abs(sum - stacked[k].lossSum) <= 1e-5 * abs(sum), "adapter \(k): \(sum) vs \(stacked[k].lossSum)")
      let expected = adapters[k].gradients.values
      let difference = zip(expected, stackedGradients[k]).map { Double(abs($0 - $1)) }.max() ?? 0
      let size = expected.map { Double(abs($0)) }.max() ?? 0
      #expect(size > 0 && difference <= 1e-5 * size, "adapter \(k): max difference \(difference) of \(size)")
    }
  }
}
