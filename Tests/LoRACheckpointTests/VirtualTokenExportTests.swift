import Foundation
import LoRAFormats
import LoRAKernels
import Testing

@testable import LoRACheckpoint
@testable import LoRAModel

/// An adapter with prompt or prefix tuning: its checkpoint holds every parameter (and reads
/// back identically); GGUF LoRA, merges, combinations and resizing refuse it with a sentence
/// saying why, writing nothing.
@Suite struct VirtualTokenExportTests {
  static func adapter(_ model: LlamaModel) throws -> LoRAAdapter {
    try LoRAAdapter(
      config: LoRAConfig(r: 2, loraAlpha: 4, virtualTokens: .init(kind: .prefix, tokens: 3, projection: 5)),
      model: model.config, seed: 9)
  }

  @Test func aCheckpointHoldsTheVirtualTokens() throws {
    let model = try LlamaModel.load(path: ExportFixtures.path("tiny-tied/model.gguf")).model
    let adapter = try Self.adapter(model)
    let path = NSTemporaryDirectory() + "virtual-\(UUID().uuidString).sldckpt"
    defer { try? FileManager.default.removeItem(atPath: path) }
    try adapter.saveWeightsCheckpoint(
      to: path, base: .init(fingerprint: "f", source: "tiny", config: model.config))
    let again = try LoRAAdapter.load(checkpoint: CheckpointReader(path: path))
    #expect(again.config.virtualTokens == adapter.config.virtualTokens)
    #expect(again.parameters.values == adapter.parameters.values)
    #expect(again.virtualTokens?.projection != nil)
  }

  @Test func weightOnlyFormsRefuseIt() throws {
    let files = try ModelFiles.open(ExportFixtures.path("tiny-tied/model.gguf"))
    let model = try LlamaModel.load(files).model
    let adapter = try Self.adapter(model)
    let path = NSTemporaryDirectory() + "virtual-\(UUID().uuidString).gguf"
    #expect {
      try adapter.saveGGUFLoRA(to: path, base: model.config, baseName: "tiny")
    } throws: {
      "\($0)".contains("llama.cpp has no prompt or prefix tuning")
        && "\($0)".contains("prefix tuning, 3 virtual tokens")
    }
    #expect(!FileManager.default.fileExists(atPath: path))
    #expect { try MergedModel(files: files, model: model, adapters: [adapter]) } throws: {
      "\($0)".contains("a merged model holds LoRA's ΔW only")
    }
    #expect {
      try AdapterCombine.combine(
        [adapter, adapter], model: model.config,
        options: .init(method: .cat, weights: [1, 1], rank: nil, density: 1))
    } throws: { "\($0)".contains("combining holds LoRA's ΔW only") }
    #expect { try AdapterResize.resized(adapter, model: model.config, to: .rank(1)) } throws: {
      "\($0)".contains("resizing")
    }
  }
}
