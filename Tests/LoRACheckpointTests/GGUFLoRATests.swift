import Foundation
import LoRAFormats
import LoRAKernels
import LoRAModel
import Testing

@testable import LoRACheckpoint

/// GGUF LoRA export: llama.cpp's conventions read straight from the file (names, ne order,
/// alpha/R scale, q/k permutation, folded scales), and the round trip through our reader.
@Suite struct GGUFLoRATests {
  /// What llama.cpp applies for base tensor `name`: (alpha/R)·B·A with R = lora_b's ne[0],
  /// then un-permuted to Hugging Face rows for q/k of Llama: [OUT, IN].
  static func llamaCppDelta(_ file: GGUFFile, _ name: String, unpermuteHeads heads: Int?) throws -> Tensor {
    let a = try #require(file.info(name + ".lora_a"))
    let b = try #require(file.info(name + ".lora_b"))
    #expect(a.dimensions[1] == b.dimensions[0], "lora_a ne [IN, R], lora_b ne [R, OUT]")
    let alpha = Float(try #require(file.metadata["adapter.lora.alpha"]?.double))
    let scale = alpha == 0 ? 1 : alpha / Float(b.dimensions[0])
    var delta = Tensor(zeros: [b.shape[0], a.shape[1]])
    LowRank.merge(into: delta, a: try file.tensor(a.name), b: try file.tensor(b.name), scale: scale)
    if let heads {
      let hf = Tensor(zeros: delta.shape)
      LlamaWeights.unpermuteRows(hf, from: delta, heads: heads)
      delta = hf
    }
    return delta
  }

  func tinyTied() throws -> LlamaModel {
    try LlamaModel.load(path: ExportFixtures.path("tiny-tied/model.gguf")).model
  }

  @Test func plainAdapterIsWrittenAsLlamaCppExpects() throws {
    let model = try tinyTied()
    let adapter = try LoRAAdapter.loadPEFT(from: ExportFixtures.path("peft-tiny"), model: model.config)
    let folder = try ExportTestFolder()
    let path = folder.path + "/adapter.gguf"
    try adapter.saveGGUFLoRA(to: path, base: model.config, baseName: "tiny")

    let file = try GGUFFile(path: path)
    #expect(file.metadata["general.architecture"] == .string("llama"))
    #expect(file.metadata["general.type"] == .string("adapter"))
    #expect(file.metadata["adapter.type"] == .string("lora"))
    #expect(file.metadata["adapter.lora.alpha"] == .float32(8))
    #expect(file.metadata["general.alignment"] == .uint32(32))
    #expect(file.tensors.count == 2 * adapter.modules.count)
    let q = try #require(file.info("blk.1.attn_q.weight.lora_a"))
    #expect(q.dimensions == [32, 4] && q.type == .f32)  // ne [IN, R]
    #expect(file.info("blk.1.attn_q.weight.lora_b")?.dimensions == [4, 32])  // ne [R, OUT]
    #expect(file.info("blk.0.ffn_down.weight.lora_b")?.dimensions == [4, 32])
    #expect(file.info("blk.0.ffn_down.weight.lora_a")?.dimensions == [64, 4])

    for m in adapter.modules {
      let name = LoRAAdapter.ggufTensorName(layer: m.layer, target: m.target)
      // alpha/r is the same everywhere: A and B are written unchanged (B's rows permuted for q/k).
      #expect(try file.tensor(name + ".lora_a").values == m.a.values)
      let heads: Int? = m.target == .q ? 4 : m.target == .k ? 2 : nil
      let b = try file.tensor(name + ".lora_b")
      if let heads {
        let unpermuted = Tensor(zeros: b.shape)
        LlamaWeights.unpermuteRows(unpermuted, from: b, heads: heads)
        #expect(unpermuted.values == m.b.values)
        #expect(b.values != m.b.values, "q/k rows must be permuted for llama")
      } else {
        #expect(b.values == m.b.values)
      }
      let delta = try Self.llamaCppDelta(file, name, unpermuteHeads: heads)
      #expect(ExportFixtures.maxDifference(delta.values, ExportFixtures.delta(m).values) <= 1e-6)
    }
  }

  @Test func rsLoRAAndPatternsAreFoldedIntoB() throws {
    // rsLoRA (alpha/√r), q_proj of rank 2, down_proj with alpha 16: three different s·R.
    let model = try tinyTied()
    let adapter = try LoRAAdapter.loadPEFT(from: ExportFixtures.path("peft-tiny-rslora"), model: model.config)
    #expect(Set(adapter.modules.map { $0.scale * Float($0.rank) }).count == 3)
    let folder = try ExportTestFolder()
    let path = folder.path + "/rslora.gguf"
    try adapter.saveGGUFLoRA(to: path, base: model.config)
    let file = try GGUFFile(path: path)
    // The most common s·R (k, v, o, gate, up: alpha 8, r 4 → 8/2·4 = 16) is the global alpha.
    #expect(file.metadata["adapter.lora.alpha"] == .float32(16))
    #expect(file.info("blk.0.attn_q.weight.lora_b")?.dimensions == [2, 32])
    var folded = 0
    for m in adapter.modules {
      let name = LoRAAdapter.ggufTensorName(layer: m.layer, target: m.target)
      let heads: Int? = m.target == .q ? 4 : m.target == .k ? 2 : nil
      let delta = try Self.llamaCppDelta(file, name, unpermuteHeads: heads)
      let ours = ExportFixtures.delta(m).values
      #expect(ExportFixtures.maxDifference(delta.values, ours) <= 1e-6 * max(1, ExportFixtures.maxAbs(ours)))
      if m.target == .q || m.target == .down { folded += 1 }
    }
    #expect(folded == 4)

    // Read back: ΔW of every module is the same (A and B differ where the scale was folded).
    let back = try LoRAAdapter.loadGGUFLoRA(path: path, model: model.config)
    #expect(back.modules.count == adapter.modules.count)
    for m in adapter.modules {
      let n = try #require(back.module(layer: m.layer, target: m.target))
      #expect(n.rank == m.rank)
      #expect(n.a.values == m.a.values)
      let ours = ExportFixtures.delta(m).values
      #expect(
        ExportFixtures.maxDifference(ExportFixtures.delta(n).values, ours)
          <= 1e-6 * max(1, ExportFixtures.maxAbs(ours)))
    }
    let reference = ExportFixtures.logits(model, adapter: adapter)
    #expect(ExportFixtures.maxDifference(ExportFixtures.logits(model, adapter: back), reference) <= 1e-5)
    #expect(
      ExportFixtures.maxDifference(ExportFixtures.logits(model), reference) > 1e-3, "the adapter matters")
  }

  @Test func plainAdapterRoundTripsExactly() throws {
    let model = try tinyTied()
    let adapter = try LoRAAdapter.loadPEFT(from: ExportFixtures.path("peft-tiny"), model: model.config)
    let folder = try ExportTestFolder()
    let path = folder.path + "/a.gguf"
    try adapter.saveGGUFLoRA(to: path, base: model.config)
    let back = try LoRAAdapter.loadGGUFLoRA(path: path, model: model.config)
    #expect(back.config.r == 4 && back.config.loraAlpha == 8 && !back.config.useRslora)
    #expect(back.parameters.values == adapter.parameters.values)
    #expect(ExportFixtures.logits(model, adapter: back) == ExportFixtures.logits(model, adapter: adapter))
  }

  @Test func qwen2IsNotPermutedAndPartialLayersRoundTrip() throws {
    let model = try LlamaModel.load(path: ExportFixtures.path("tiny-qwen2/model.gguf")).model
    let adapter = try LoRAAdapter(
      config: LoRAConfig(
        r: 3, loraAlpha: 6, targetModules: ["q_proj", "k_proj", "up_proj"], layersToTransform: [1]),
      model: model.config, seed: 1)
    ExportFixtures.randomize(adapter, seed: 2)
    let folder = try ExportTestFolder()
    let path = folder.path + "/qwen.gguf"
    try adapter.saveGGUFLoRA(to: path, base: model.config)
    let file = try GGUFFile(path: path)
    #expect(file.metadata["general.architecture"] == .string("qwen2"))
    #expect(file.tensors.map(\.name).allSatisfy { $0.hasPrefix("blk.1.") })
    let q = try #require(adapter.module(layer: 1, target: .q))
    #expect(try file.tensor("blk.1.attn_q.weight.lora_b").values == q.b.values)
    let back = try LoRAAdapter.loadGGUFLoRA(path: path, model: model.config)
    #expect(back.config.layersToTransform == [1])
    #expect(back.parameters.values == adapter.parameters.values)
  }

  @Test func badInputsAreRefusedClearly() throws {
    let model = try tinyTied()
    let adapter = try LoRAAdapter.loadPEFT(from: ExportFixtures.path("peft-tiny"), model: model.config)
    let folder = try ExportTestFolder()
    let path = folder.path + "/a.gguf"
    try adapter.saveGGUFLoRA(to: path, base: model.config)
    let before = try Data(contentsOf: URL(fileURLWithPath: path))

    // An existing file without overwrite.
    let other = try LoRAAdapter(config: LoRAConfig(r: 2), model: model.config, seed: 5)
    #expect(throws: LoRAAdapter.GGUFLoRAError.self) { try other.saveGGUFLoRA(to: path, base: model.config) }
    #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == before)

    // An adapter for a wider model.
    var wide = model.config
    wide.hiddenSize = 48
    wide.headSize = 12
    let wrong = try LoRAAdapter(config: LoRAConfig(r: 2), model: wide, seed: 5)
    do {
      try wrong.saveGGUFLoRA(to: folder.path + "/wrong.gguf", base: model.config)
      Issue.record("an adapter for another model shape was written")
    } catch let error as LoRAAdapter.GGUFLoRAError {
      #expect(error.description.contains("another model"))
    }

    // Reading for another architecture, or a file that is not an adapter.
    let qwen = try LlamaModel.load(path: ExportFixtures.path("tiny-qwen2/model.gguf")).model
    do {
      _ = try LoRAAdapter.loadGGUFLoRA(path: path, model: qwen.config)
      Issue.record("a llama adapter loaded on qwen2")
    } catch let error as LoRAAdapter.GGUFLoRAError {
      #expect(error.description.contains("architecture \"llama\""))
    }
    do {
      _ = try LoRAAdapter.loadGGUFLoRA(path: ExportFixtures.path("tiny-tied/model.gguf"), model: model.config)
      Issue.record("a model file loaded as an adapter")
    } catch let error as LoRAAdapter.GGUFLoRAError {
      #expect(error.description.contains("not a GGUF LoRA adapter"))
    }
    #expect(folder.contents == ["a.gguf"])
  }
}
