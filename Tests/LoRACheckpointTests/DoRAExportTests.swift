import Foundation
import LoRAFormats
import LoRAKernels
import LoRAModel
import Testing

@testable import LoRACheckpoint

/// A DoRA adapter out of the trainer: merged, it gives the adapter's logits; PEFT keeps
/// use_dora and the magnitudes; a GGUF LoRA file, combining, resizing and rank analysis,
/// which hold s·B·A alone, refuse it with a sentence and write nothing.
@Suite struct DoRAExportTests {
  func load() throws -> (ModelFiles, LlamaModel, LoRAAdapter) {
    let files = try ModelFiles.open(ExportFixtures.path("tiny-tied/model.gguf"))
    let base = try LlamaModel.load(files).model
    let adapter = try LoRAAdapter.loadPEFT(from: ExportFixtures.path("peft-tiny-dora"), model: base.config)
    return (files, base, adapter)
  }

  @Test func mergedModelGivesTheDoRAAdaptersLogits() throws {
    let (files, base, adapter) = try load()
    let folder = try ExportTestFolder()
    let path = folder.path + "/merged.gguf"
    try MergedModel(files: files, model: base, adapters: [adapter]).write(
      to: path, format: .gguf, dtype: .f32)
    let merged = try LlamaModel.load(ModelFiles.open(path)).model
    let reference = ExportFixtures.logits(base, adapter: adapter)
    let size = max(1, ExportFixtures.maxAbs(reference))
    #expect(ExportFixtures.maxDifference(ExportFixtures.logits(merged), reference) <= 1e-5 * size)
    // Plain LoRA with the same A and B gives other logits: the magnitudes are merged too.
    var plainConfig = adapter.config
    plainConfig.useDora = false
    let plain = try LoRAAdapter(config: plainConfig, model: base.config, seed: 0)
    for (p, d) in zip(plain.modules, adapter.modules) {
      p.a.copy(from: d.a)
      p.b.copy(from: d.b)
    }
    #expect(
      ExportFixtures.maxDifference(ExportFixtures.logits(base, adapter: plain), reference) > 1e-3 * size)
  }

  @Test func peftExportKeepsUseDoraAndTheMagnitudes() throws {
    let (_, base, adapter) = try load()
    let folder = try ExportTestFolder()
    let path = folder.path + "/peft"
    try adapter.savePEFT(to: path, baseModel: "tiny-tied")
    let config =
      try JSONSerialization.jsonObject(
        with: Data(contentsOf: URL(fileURLWithPath: path + "/adapter_config.json"))) as? [String: Any]
    #expect(config?["use_dora"] as? Bool == true)
    let tensors = try SafetensorsFile(path: path + "/adapter_model.safetensors").tensors.keys
    #expect(tensors.filter { $0.hasSuffix(".lora_magnitude_vector") }.count == adapter.modules.count)
    let again = try LoRAAdapter.loadPEFT(from: path, model: base.config)
    #expect(again.config.useDora && again.parameters.values == adapter.parameters.values)
  }

  @Test func lowRankOnlyUsesRefuseBeforeWriting() throws {
    let (_, base, adapter) = try load()
    let folder = try ExportTestFolder()
    let path = folder.path + "/dora.gguf"
    func message(_ body: () throws -> Void) -> String {
      do { try body() } catch { return "\(error)" }
      return ""
    }
    let gguf = message { try adapter.saveGGUFLoRA(to: path, base: base.config) }
    #expect(gguf.contains("GGUF LoRA") && gguf.contains("use_dora") && gguf.contains("export --format peft"))
    #expect(!FileManager.default.fileExists(atPath: path))
    #expect(
      message {
        _ = try AdapterCombine.combine(
          [adapter, adapter], model: base.config, options: .init(method: .cat, weights: [1, 1]))
      }.contains("DoRA"))
    #expect(
      message { _ = try AdapterResize.resized(adapter, model: base.config, to: .rank(2)) }.contains("DoRA"))
    #expect(message { _ = try AdapterChain.flatten([adapter], model: base.config) }.contains("DoRA"))
    #expect(
      message {
        _ = try AdapterAnalysis(adapters: [(adapter, "dora")], model: base, readBase: false)
      }.contains("dora: rank analysis"))
  }
}
