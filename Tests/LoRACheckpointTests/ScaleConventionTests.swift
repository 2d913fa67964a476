import Foundation
import LoRAKernels
import LoRAModel
import Testing

@testable import LoRACheckpoint

/// The effective update s·B·A of every module survives each way in and out — native
/// checkpoint, PEFT folder, GGUF LoRA — with rsLoRA and per-module rank/alpha patterns,
/// where the three conventions differ most.
@Suite struct ScaleConventionTests {
  @Test(arguments: [false, true])
  func everyFormatCarriesTheEffectiveUpdate(rslora: Bool) throws {
    let (model, _) = try LlamaModel.load(path: ExportFixtures.path("tiny-tied"))
    let config = LoRAConfig(
      r: 4, loraAlpha: 8, targetModules: ["q_proj", "v_proj", "down_proj"], useRslora: rslora,
      rankPattern: ["v_proj": 2], alphaPattern: ["down_proj": 3])
    let adapter = try LoRAAdapter(config: config, model: model.config, seed: 1)
    ExportFixtures.randomize(adapter, seed: 2, scale: 0.3)
    let folder = try ExportTestFolder()
    let base = CheckpointHeader.Base(fingerprint: "sha256:x", source: "tiny-tied", config: model.config)

    // Native: the same numbers and scales.
    let native = folder.path + "/a.sldckpt"
    try adapter.saveWeightsCheckpoint(to: native, base: base)
    let fromNative = try LoRAAdapter.load(checkpoint: CheckpointReader(path: native))
    #expect(fromNative.parameters.values == adapter.parameters.values)
    #expect(fromNative.modules.map(\.scale) == adapter.modules.map(\.scale))
    #expect(
      try CheckpointReader(path: native).header.scaleConvention == (rslora ? "alpha/sqrt(r)" : "alpha/r"))

    // PEFT and GGUF LoRA: the same ΔW per module; checkpoint → PEFT → checkpoint is exact.
    try fromNative.savePEFT(to: folder.path + "/peft", baseModel: "tiny-tied")
    let fromPEFT = try LoRAAdapter.loadPEFT(from: folder.path + "/peft", model: model.config)
    try fromPEFT.saveGGUFLoRA(to: folder.path + "/a.gguf", base: model.config)
    let fromGGUF = try LoRAAdapter.loadGGUFLoRA(path: folder.path + "/a.gguf", model: model.config)
    #expect(fromPEFT.parameters.values == adapter.parameters.values)
    for (i, m) in adapter.modules.enumerated() {
      let expected = ExportFixtures.delta(m).values
      let tolerance = 1e-6 * max(ExportFixtures.maxAbs(expected), 1)
      #expect(ExportFixtures.maxDifference(ExportFixtures.delta(fromPEFT.modules[i]).values, expected) == 0)
      #expect(
        ExportFixtures.maxDifference(ExportFixtures.delta(fromGGUF.modules[i]).values, expected) <= tolerance)
    }
    // And the models they make agree.
    let logits = ExportFixtures.logits(model, adapter: adapter)
    #expect(ExportFixtures.maxDifference(ExportFixtures.logits(model, adapter: fromGGUF), logits) < 1e-4)
  }

  @Test func anAdapterWhoseTargetsTheBaseLacksIsRefused() throws {
    let (model, _) = try LlamaModel.load(path: ExportFixtures.path("tiny-tied"))
    let adapter = try LoRAAdapter(
      config: LoRAConfig(r: 2, loraAlpha: 4, layersToTransform: [model.config.layers - 1]),
      model: model.config,
      seed: 1)
    let folder = try ExportTestFolder()
    try adapter.savePEFT(to: folder.path + "/peft", baseModel: "tiny")
    var smaller = model.config
    smaller.layers -= 1
    #expect {
      try LoRAAdapter.loadPEFT(from: folder.path + "/peft", model: smaller)
    } throws: { "\($0)".contains("layers_to_transform names layer \(model.config.layers - 1)") }
    var narrower = model.config
    narrower.hiddenSize *= 2
    #expect {
      try LoRAAdapter.loadPEFT(from: folder.path + "/peft", model: narrower)
    } throws: { "\($0)".contains("shape") }
  }
}
