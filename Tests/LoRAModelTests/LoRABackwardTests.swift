import Foundation
import LoRAKernels
import Testing

@testable import LoRAModel

/// The whole model's LoRA gradients against finite differences of its loss.
@Suite struct LoRABackwardTests {
  func setUp(
    dropout: Double = 0, targets: [String] = ["all-linear"], layers: [Int]? = nil, useDora: Bool = false
  ) throws -> (
    LlamaModel, LoRAAdapter, LlamaActivations, LlamaGradients, [Int32], [Int32]
  ) {
    let (model, _) = try LlamaModel.load(path: Fixtures.path("tiny-qwen2"))
    let config = LoRAConfig(
      r: 2, loraAlpha: 4, loraDropout: dropout, targetModules: targets, layersToTransform: layers,
      useDora: useDora)
    let adapter = try LoRAAdapter(config: config, model: model.config, seed: 5)
    var random = SeededRandom(seed: 9)
    for m in adapter.modules { for i in 0..<m.b.count { m.b[i] = (random.nextUnitFloat() - 0.5) * 0.4 } }
    // DoRA: magnitudes off ‖W0 + s·B·A‖, so that every row is rescaled.
    model.resetMagnitudes(of: adapter)
    for m in adapter.modules {
      guard let magnitude = m.magnitude else { continue }
      for j in 0..<magnitude.count { magnitude[j] *= 0.7 + 0.6 * random.nextUnitFloat() }
    }
    let (batch, length) = (2, 6)
    let tokens: [Int32] = (0..<(batch * length)).map { _ in Int32(random.next() % 96) }
    var targets = [Int32](repeating: -1, count: batch * length)
    for b in 0..<batch { for t in 1..<(length - 1) { targets[b * length + t] = tokens[b * length + t + 1] } }
    let activations = LlamaActivations(
      config: model.config, batch: batch, length: length, keepForBackward: true, adapter: adapter)
    let gradients = LlamaGradients(config: model.config, batch: batch, length: length, maxRank: 2)
    return (model, adapter, activations, gradients, tokens, targets)
  }

  func meanLoss(
    _ model: LlamaModel, _ a: LlamaActivations, _ g: LlamaGradients, _ tokens: [Int32], _ targets: [Int32]
  )
    -> Double
  {
    model.forward(tokens: tokens, activations: a)
    let (sum, count) = model.loss(targets: targets, activations: a, gradients: g)
    return sum / Double(count)
  }

  /// With DoRA (on tiny-qwen2, whose q, k, v have biases) the norms are held at the first
  /// pass's: the backward's gradient is of that function (PEFT's), so are the differences.
  @Test(arguments: [
    (0.0, nil, false), (0.3, nil, false), (0.0, [1], false), (0.0, nil, true), (0.3, nil, true),
  ])
  func gradientsMatchFiniteDifferences(dropout: Double, layers: [Int]?, useDora: Bool) throws {
    // [1]: only the upper layer is adapted, so the backward pass stops there.
    let (model, adapter, a, g, tokens, targets) = try setUp(
      dropout: dropout, layers: layers, useDora: useDora)
    a.dropoutSeed = 77
    model.forward(tokens: tokens, activations: a)
    a.holdNorms = true
    let trained = targets.filter { $0 >= 0 }.count
    adapter.gradients.zero()
    _ = model.backward(targets: targets, activations: a, gradients: g, gradientScale: 1 / Float(trained))
    // Sample parameters across every module.
    var random = SeededRandom(seed: 3)
    var difference = 0.0
    var reference = 0.0
    let eps: Float = 5e-3
    for _ in 0..<60 {
      let i = Int(random.next() % UInt64(adapter.parameterCount))
      let saved = adapter.parameters[i]
      adapter.parameters[i] = saved + eps
      let plus = meanLoss(model, a, g, tokens, targets)
      adapter.parameters[i] = saved - eps
      let minus = meanLoss(model, a, g, tokens, targets)
      adapter.parameters[i] = saved
      let numeric = (plus - minus) / Double(2 * eps)
      difference += pow(numeric - Double(adapter.gradients[i]), 2)
      reference += numeric * numeric
    }
    #expect((difference / reference).squareRoot() < 3e-2)
  }

  @Test func withoutAnAdapterTheLossIsUnchangedAndZeroBGivesTheBaseLoss() throws {
    let (model, _, _, g, tokens, targets) = try setUp()
    let plain = LlamaActivations(config: model.config, batch: 2, length: 6, keepForBackward: false)
    let base = meanLoss(model, plain, g, tokens, targets)
    let fresh = try LoRAAdapter(
      config: LoRAConfig(r: 2, targetModules: ["all-linear"]), model: model.config, seed: 1)
    let adapted = LlamaActivations(
      config: model.config, batch: 2, length: 6, keepForBackward: true, adapter: fresh)
    #expect(meanLoss(model, adapted, g, tokens, targets) == base)  // B = 0 at initialisation
  }

  @Test func adapterLayoutAndInitialisation() throws {
    let (model, _) = try LlamaModel.load(path: Fixtures.path("tiny-tied"))
    let adapter = try LoRAAdapter(
      config: LoRAConfig(r: 4, targetModules: ["q_proj", "down_proj"], layersToTransform: [1]),
      model: model.config,
      seed: 1)
    #expect(
      adapter.modules.map(\.name) == ["model.layers.1.self_attn.q_proj", "model.layers.1.mlp.down_proj"])
    #expect(adapter.parameterCount == 4 * 32 + 32 * 4 + 4 * 64 + 32 * 4)
    let q = try #require(adapter.module(layer: 1, target: .q))
    #expect(q.peftKeyA == "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight")
    let bound = 1 / Float(32).squareRoot()
    #expect(q.a.values.allSatisfy { abs($0) <= bound } && q.a.values.contains { $0 != 0 })
    #expect(q.b.values.allSatisfy { $0 == 0 })
    #expect(adapter.module(layer: 0, target: .q) == nil)
    let again = try LoRAAdapter(config: adapter.config, model: model.config, seed: 1)
    #expect(again.parameters.values == adapter.parameters.values)
  }

  @Test func badConfigurationsAreNamed() throws {
    let (model, _) = try LlamaModel.load(path: Fixtures.path("tiny-tied"))
    func message(_ config: LoRAConfig) -> String {
      do {
        _ = try LoRAAdapter(config: config, model: model.config, seed: 0)
        return "accepted"
      } catch { return "\(error)" }
    }
    #expect(
      message(LoRAConfig(r: 4, rankPattern: ["q_proj": 40]))
        == "rank 40 of model.layers.0.self_attn.q_proj must be between 1 and 32 (its weight is 32×32)")
    #expect(message(LoRAConfig(r: 0)) == "rank must be at least 1, got 0")
    #expect(message(LoRAConfig(r: 17, targetModules: ["k_proj"])).contains("must be between 1 and 16"))
    #expect(
      message(LoRAConfig(targetModules: ["c_attn"])).hasPrefix("target module 'c_attn' is not a linear layer")
    )
    #expect(message(LoRAConfig(loraAlpha: .nan)) == "lora_alpha must be a positive number, got nan")
    #expect(message(LoRAConfig(loraDropout: -0.1)) == "lora_dropout must be in [0, 1), got -0.1")
    #expect(message(LoRAConfig(layersToTransform: [5])).contains("layer 5, but the model has layers 0 to 1"))
  }

  @Test func rankAndAlphaPatternsFollowPEFT() {
    let config = LoRAConfig(
      r: 8, loraAlpha: 16, rankPattern: ["q_proj": 2, "layers\\.1\\.mlp\\.down_proj": 4],
      alphaPattern: ["down_proj": 32])
    #expect(config.rankAndAlpha(module: "model.layers.0.self_attn.q_proj") == (2, 16))
    #expect(config.rankAndAlpha(module: "model.layers.1.mlp.down_proj").rank == 4)
    #expect(config.rankAndAlpha(module: "model.layers.0.mlp.down_proj") == (8, 32))
    #expect(config.rankAndAlpha(module: "model.layers.0.self_attn.v_proj") == (8, 16))
    #expect(LoRAConfig(r: 4, loraAlpha: 8, useRslora: true).scale(rank: 4, alpha: 8) == 4)
  }
}

@Suite struct CheckpointingTests {
  @Test(arguments: [0.0, 0.2], [false, true])
  func recomputedLayersGiveTheSameGradients(dropout: Double, useDora: Bool) throws {
    let (model, _) = try LlamaModel.load(path: Fixtures.path("tiny-qwen2"))
    let adapter = try LoRAAdapter(
      config: LoRAConfig(
        r: 2, loraAlpha: 4, loraDropout: dropout, targetModules: ["all-linear"], useDora: useDora),
      model: model.config,
      seed: 5)
    model.resetMagnitudes(of: adapter)
    var random = SeededRandom(seed: 9)
    for m in adapter.modules { for i in 0..<m.b.count { m.b[i] = random.nextUnitFloat() - 0.5 } }
    let tokens: [Int32] = (0..<14).map { _ in Int32(random.next() % 96) }
    let targets: [Int32] = tokens.dropFirst().map { $0 } + [-1]
    var results: [[Float]] = []
    var losses: [Double] = []
    for checkpointed in [false, true] {
      let a = LlamaActivations(
        config: model.config, batch: 2, length: 7, keepForBackward: true, adapter: adapter,
        checkpointed: checkpointed)
      a.dropoutSeed = 11
      let g = LlamaGradients(config: model.config, batch: 2, length: 7, maxRank: 2)
      model.forward(tokens: tokens, activations: a)
      adapter.gradients.zero()
      losses.append(
        model.backward(targets: targets, activations: a, gradients: g, gradientScale: 0.1).lossSum)
      results.append(adapter.gradients.values)
    }
    #expect(losses[0] == losses[1])
    #expect(results[0] == results[1])
  }
}
