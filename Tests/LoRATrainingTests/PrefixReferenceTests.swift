import Foundation
import LoRAFormats
import LoRAKernels
import Testing

@testable import LoRAModel
@testable import LoRATraining

/// Prompt tuning, prefix tuning (with and without the projection MLP) and each of them with
/// LoRA in one adapter, against PyTorch + PEFT in float64 on the tiny model: the loss, every
/// trainable gradient and five AdamW steps (scripts/make_prefix_fixtures.py).
@Suite struct PrefixReferenceTests {
  struct Reference: Decodable {
    struct LoRA: Decodable {
      var r: Int
      var lora_alpha: Double
    }
    var kind: String
    var virtual_tokens: Int
    var projection: Int?
    var lora: LoRA?
    var lora_targets: [String]
    var input_ids: [[Int32]]
    var labels: [[Int32]]
    var loss: Double
    var grads: [String: [Double]]
    var steps: ReferenceSupport.AdamWSteps
  }

  static let fixtures = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!
    .appendingPathComponent("prefix")
  static let cases = ["prompt", "prefix", "prefix-mlp", "lora-prompt", "lora-prefix", "lora-prefix-mlp"]

  struct Setup {
    var model: LlamaModel
    var adapter: LoRAAdapter
    var reference: Reference
    var activations: LlamaActivations
    var gradients: LlamaGradients
    var tokens: [Int32]
    var targets: [Int32]
  }

  /// The adapter's trainable tensors under the fixture's names, as (parameter, gradient).
  static func named(_ adapter: LoRAAdapter) -> [String: (Tensor, Tensor)] {
    var named: [String: (Tensor, Tensor)] = [:]
    for m in adapter.modules {
      named[m.peftKeyA] = (m.a, m.gradA)
      named[m.peftKeyB] = (m.b, m.gradB)
    }
    if let v = adapter.virtualTokens {
      named["prompt_embeddings"] = (v.embedding, v.gradEmbedding)
      if let p = v.projection {
        named["transform.0.weight"] = (p.w1, p.gradW1)
        named["transform.0.bias"] = (p.b1, p.gradB1)
        named["transform.2.weight"] = (p.w2, p.gradW2)
        named["transform.2.bias"] = (p.b2, p.gradB2)
      }
    }
    return named
  }

  func setUp(_ name: String, checkpointed: Bool = false) throws -> Setup {
    let (model, _) = try LlamaModel.load(ModelFiles.open(PEFTReferenceTests.tinyModel))
    let folder = Self.fixtures.appendingPathComponent(name)
    let reference = try JSONDecoder().decode(
      Reference.self, from: Data(contentsOf: folder.appendingPathComponent("reference.json")))
    let virtual = VirtualTokenConfig(
      kind: try #require(VirtualTokenConfig.Kind(rawValue: reference.kind)), tokens: reference.virtual_tokens,
      projection: reference.projection)
    let config = LoRAConfig(
      r: reference.lora?.r ?? 8, loraAlpha: reference.lora?.lora_alpha ?? 16,
      targetModules: reference.lora_targets,
      virtualTokens: virtual)
    let adapter = try LoRAAdapter(config: config, model: model.config, seed: 1)
    let file = try SafetensorsFile(path: folder.appendingPathComponent("parameters.safetensors").path)
    let named = Self.named(adapter)
    #expect(Set(named.keys) == Set(file.tensors.keys))
    for (key, (parameter, _)) in named {
      let stored = try file.tensor(key)
      #expect(stored.count == parameter.count, "\(key): \(stored.shape) vs \(parameter.shape)")
      parameter.copy(from: stored.reshaped(parameter.shape))
    }
    let (batch, length) = (reference.input_ids.count, reference.input_ids[0].count)
    let targets = ReferenceSupport.targets(labels: reference.labels)
    let activations = LlamaActivations(
      config: model.config, batch: batch, length: length, keepForBackward: true, adapter: adapter,
      checkpointed: checkpointed)
    return Setup(
      model: model, adapter: adapter, reference: reference, activations: activations,
      gradients: LlamaGradients(
        config: model.config, batch: batch, length: activations.length, keys: activations.keyLength,
        maxRank: max(adapter.modules.map(\.rank).max() ?? 1, 1)),
      tokens: reference.input_ids.flatMap { $0 }, targets: targets)
  }

  /// Forward, loss and gradients of the mean loss; returns the mean loss.
  func step(_ s: Setup) -> Double {
    ReferenceSupport.meanLossStep(
      s.model, s.adapter, s.activations, s.gradients, tokens: s.tokens, targets: s.targets)
  }

  func checkGradients(_ s: Setup) throws {
    let named = Self.named(s.adapter)
    #expect(Set(named.keys) == Set(s.reference.grads.keys))
    for (key, (_, gradient)) in named {
      let expected = try #require(s.reference.grads[key], "no reference gradient for \(key)")
      #expect(expected.count == gradient.count)
      let relative = ReferenceSupport.relativeError(gradient.values, expected)
      #expect(relative <= 1e-4, "\(key): relative L2 error \(relative)")
    }
  }

  @Test(arguments: cases) func lossAndEveryGradientMatchPEFT(_ name: String) throws {
    let s = try setUp(name)
    let loss = step(s)
    #expect(abs(loss - s.reference.loss) / s.reference.loss <= 1e-5, "loss \(loss) vs \(s.reference.loss)")
    try checkGradients(s)
  }

  @Test(arguments: ["prompt", "lora-prefix-mlp"]) func activationCheckpointingGivesTheSameGradients(
    _ name: String
  )
    throws
  {
    let s = try setUp(name, checkpointed: true)
    let loss = step(s)
    #expect(abs(loss - s.reference.loss) / s.reference.loss <= 1e-5)
    try checkGradients(s)
  }

  @Test(arguments: cases) func fiveAdamWStepsMatchPyTorch(_ name: String) throws {
    let s = try setUp(name)
    ReferenceSupport.expectFiveAdamWSteps(s.adapter, s.reference.steps, label: "\(name): ") { step(s) }
  }

  /// The loss of `adapter` on the fixture's batch (no gradients).
  func loss(of adapter: LoRAAdapter, _ s: Setup) -> Double {
    let a = LlamaActivations(
      config: s.model.config, batch: s.reference.input_ids.count, length: s.reference.input_ids[0].count,
      keepForBackward: false, adapter: adapter)
    s.model.forward(tokens: s.tokens, activations: a)
    let (sum, count) = s.model.loss(targets: s.targets, activations: a, gradients: s.gradients)
    return sum / Double(count)
  }

  @Test(arguments: ["prompt", "prefix"]) func peftsOwnFolderLoadsAndGivesTheReferenceLoss(_ name: String)
    throws
  {
    let s = try setUp(name)
    let folder = Self.fixtures.appendingPathComponent(name).appendingPathComponent("peft")
    let loaded = try LoRAAdapter.loadPEFT(from: folder.path, model: s.model.config)
    #expect(loaded.modules.isEmpty)
    #expect(loaded.virtualTokens?.config == s.adapter.virtualTokens?.config)
    let got = loss(of: loaded, s)
    #expect(abs(got - s.reference.loss) / s.reference.loss <= 1e-5, "loss \(got) vs \(s.reference.loss)")
  }

  /// LoRA beside prefix tuning: the LoRA adapter with PEFT's prefix adapter in prefix_tuning/
  /// (the projection saved as its output table, as PEFT saves it); reading it back gives the
  /// same loss. A later LoRA-only adapter in the same folder removes the stale subfolder.
  @Test(arguments: cases) func peftFolderRoundTripsEveryCase(_ name: String) throws {
    let s = try setUp(name)
    let folder = NSTemporaryDirectory() + "prefix-peft-" + UUID().uuidString
    defer { try? FileManager.default.removeItem(atPath: folder) }
    try s.adapter.savePEFT(to: folder, baseModel: "tiny-tied")
    let virtual = try #require(s.adapter.virtualTokens)
    let sub = folder + "/" + LoRAAdapter.virtualSubfolder(virtual.config.kind)
    let config =
      try JSONSerialization.jsonObject(
        with: Data(contentsOf: URL(fileURLWithPath: folder + "/adapter_config.json"))) as? [String: Any]
    #expect(config?["virtual_tokens"] == nil)
    #expect(FileManager.default.fileExists(atPath: sub) == !s.adapter.modules.isEmpty)
    let loaded = try LoRAAdapter.loadPEFT(from: folder, model: s.model.config)
    #expect(loaded.modules.count == s.adapter.modules.count)
    #expect(loaded.virtualTokens?.config.projection == nil)
    let (got, want) = (loss(of: loaded, s), loss(of: s.adapter, s))
    #expect(abs(got - want) / want <= 1e-6, "\(name): reloaded loss \(got) vs \(want)")
    if !s.adapter.modules.isEmpty {
      let plain = try LoRAAdapter(
        config: LoRAConfig(r: 4, loraAlpha: 8, targetModules: s.reference.lora_targets),
        model: s.model.config,
        seed: 3)
      try plain.savePEFT(to: folder, baseModel: "tiny-tied", overwrite: true)
      #expect(!FileManager.default.fileExists(atPath: sub))
      #expect(try LoRAAdapter.loadPEFT(from: folder, model: s.model.config).virtualTokens == nil)
    }
  }
}
