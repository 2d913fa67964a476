import Foundation
import LoRAFormats
import LoRAKernels
import LoRAModel
import Testing

@testable import LoRACheckpoint

/// Merged models: the written file, loaded back by our own loader, gives the logits of the
/// base with the adapter applied; bad inputs fail clearly and leave nothing behind.
@Suite struct MergeTests {
  func load(_ path: String) throws -> (ModelFiles, LlamaModel) {
    let files = try ModelFiles.open(path)
    return (files, try LlamaModel.load(files).model)
  }

  /// The merged model's logits against base + adapter's, relative to the logits' size.
  func expectSameLogits(merged: LlamaModel, base: LlamaModel, adapter: LoRAAdapter, tolerance: Float) {
    let reference = ExportFixtures.logits(base, adapter: adapter)
    let plain = ExportFixtures.logits(base)
    let got = ExportFixtures.logits(merged)
    let size = max(1, ExportFixtures.maxAbs(reference))
    #expect(ExportFixtures.maxDifference(got, reference) <= tolerance * size)
    // The adapter changes the logits far more than the tolerance: the test can fail.
    #expect(ExportFixtures.maxDifference(plain, reference) > 10 * tolerance * size)
  }

  @Test func ggufBaseMergesIntoAGGUFWithTheAdaptersLogits() throws {
    let (files, base) = try load(ExportFixtures.path("tiny-tied/model.gguf"))
    let adapter = try LoRAAdapter.loadPEFT(from: ExportFixtures.path("peft-tiny-rslora"), model: base.config)
    let folder = try ExportTestFolder()
    let path = folder.path + "/merged.gguf"
    try MergedModel(files: files, model: base, adapters: [adapter]).write(
      to: path, format: .gguf, dtype: .f32)

    let (mergedFiles, merged) = try load(path)
    expectSameLogits(merged: merged, base: base, adapter: adapter, tolerance: 1e-5)
    // Metadata copied, tensor table in the base's order with the same shapes.
    guard case .gguf(let source) = files, case .gguf(let output) = mergedFiles else {
      Issue.record("not GGUF")
      return
    }
    #expect(output.metadata["general.architecture"] == source.metadata["general.architecture"])
    for key in source.metadataKeys where !["general.file_type", "general.alignment"].contains(key) {
      #expect(output.metadata[key] == source.metadata[key], "\(key)")
    }
    #expect(output.tensors.map(\.name) == source.tensors.map(\.name))
    #expect(output.tensors.map(\.shape) == source.tensors.map(\.shape))
    // Unadapted tensors are the base's; merged q rows are stored permuted as llama.cpp's.
    #expect(try output.tensor("token_embd.weight").values == source.tensor("token_embd.weight").values)
    let q = try output.tensor("blk.0.attn_q.weight")
    let unpermuted = Tensor(zeros: q.shape)
    LlamaWeights.unpermuteRows(unpermuted, from: q, heads: base.config.heads)
    let expected = Tensor(zeros: q.shape)
    expected.copy(from: base.weights.layers[0].q.widened())
    let m = try #require(adapter.module(layer: 0, target: .q))
    LowRank.merge(into: expected, a: m.a, b: m.b, scale: m.scale)
    #expect(ExportFixtures.maxDifference(unpermuted.values, expected.values) <= 1e-6)
    // The base's weights were not touched.
    #expect(
      base.weights.layers[0].q.values
        == (try LlamaModel.load(path: ExportFixtures.path("tiny-tied")).model.weights.layers[0].q.values))
  }

  @Test func qwen2GGUFBaseWithBiasesAndF16() throws {
    let (files, base) = try load(ExportFixtures.path("tiny-qwen2/model.gguf"))
    let adapter = try LoRAAdapter(
      config: LoRAConfig(r: 2, loraAlpha: 4, targetModules: ["all-linear"]), model: base.config, seed: 3)
    ExportFixtures.randomize(adapter, seed: 4, scale: 0.3)
    let folder = try ExportTestFolder()
    let merge = try MergedModel(files: files, model: base, adapters: [adapter])
    try merge.write(to: folder.path + "/f32.gguf", format: .gguf, dtype: .f32)
    try merge.write(to: folder.path + "/f16.gguf", format: .gguf, dtype: .f16)
    expectSameLogits(
      merged: try load(folder.path + "/f32.gguf").1, base: base, adapter: adapter, tolerance: 1e-5)
    let half = try GGUFFile(path: folder.path + "/f16.gguf")
    #expect(half.info("blk.0.attn_q.weight")?.type == .f16)
    #expect(half.info("blk.0.attn_norm.weight")?.type == .f32)
    #expect(half.info("blk.0.attn_q.bias")?.type == .f32)
    #expect(half.metadata["general.file_type"] == .uint32(1))
    expectSameLogits(merged: try load(half.path).1, base: base, adapter: adapter, tolerance: 1e-2)
  }

  @Test func huggingFaceBaseMergesIntoAFolder() throws {
    let (files, base) = try load(ExportFixtures.path("tiny-tied"))
    let adapter = try LoRAAdapter.loadPEFT(from: ExportFixtures.path("peft-tiny"), model: base.config)
    let folder = try ExportTestFolder()
    let path = folder.path + "/merged"
    try MergedModel(files: files, model: base, adapters: [adapter]).write(
      to: path, format: .safetensors, dtype: .f32)
    #expect(
      Set(try FileManager.default.contentsOfDirectory(atPath: path)) == ["config.json", "model.safetensors"])
    let config =
      try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path + "/config.json")))
      as? [String: Any]
    #expect(config?["torch_dtype"] as? String == "float32" && config?["model_type"] as? String == "llama")
    let (_, merged) = try load(path)
    expectSameLogits(merged: merged, base: base, adapter: adapter, tolerance: 1e-5)
    #expect(folder.contents == ["merged"])

    // BF16 weights load and stay close.
    try MergedModel(files: files, model: base, adapters: [adapter]).write(
      to: folder.path + "/bf16", format: .safetensors, dtype: .bf16)
    let st = try SafetensorsFile(path: folder.path + "/bf16/model.safetensors")
    #expect(st.tensors["model.layers.0.self_attn.q_proj.weight"]?.dtype == "BF16")
    expectSameLogits(merged: try load(folder.path + "/bf16").1, base: base, adapter: adapter, tolerance: 5e-2)
  }

  @Test func weightedAdaptersAreSummed() throws {
    let (files, base) = try load(ExportFixtures.path("tiny-tied"))
    let first = try LoRAAdapter.loadPEFT(from: ExportFixtures.path("peft-tiny"), model: base.config)
    let second = try LoRAAdapter.loadPEFT(from: ExportFixtures.path("peft-tiny-rslora"), model: base.config)
    let merge = try MergedModel(files: files, model: base, adapters: [first, second], weights: [0.5, -1.5])
    let folder = try ExportTestFolder()
    try merge.write(to: folder.path + "/sum", format: .safetensors, dtype: .f32)
    let (_, merged) = try load(folder.path + "/sum")
    for l in 0..<base.config.layers {
      for target in [LoRATarget.q, .down] {
        let expected = Tensor(zeros: merge.baseWeight(layer: l, target: target).shape)
        expected.copy(from: merge.baseWeight(layer: l, target: target))
        for (adapter, w) in [(first, Float(0.5)), (second, Float(-1.5))] {
          let m = try #require(adapter.module(layer: l, target: target))
          LowRank.merge(into: expected, a: m.a, b: m.b, scale: w * m.scale)
        }
        let got = target == .q ? merged.weights.layers[l].q : merged.weights.layers[l].down
        #expect(ExportFixtures.maxDifference(got.values, expected.values) <= 1e-6)
      }
    }
    // A weight of 1 on one adapter is that adapter alone.
    let single = try MergedModel(files: files, model: base, adapters: [first], weights: [1])
    let m = try #require(first.module(layer: 1, target: .v))
    let expected = Tensor(zeros: [m.outFeatures, m.inFeatures])
    expected.copy(from: base.weights.layers[1].v.widened())
    LowRank.merge(into: expected, a: m.a, b: m.b, scale: m.scale)
    #expect(single.mergedWeight(layer: 1, target: .v).values == expected.values)
  }

  @Test func badInputsFailClearlyAndLeaveNothing() throws {
    let (ggufFiles, base) = try load(ExportFixtures.path("tiny-tied/model.gguf"))
    let (folderFiles, _) = try load(ExportFixtures.path("tiny-tied"))
    let adapter = try LoRAAdapter.loadPEFT(from: ExportFixtures.path("peft-tiny"), model: base.config)
    let folder = try ExportTestFolder()

    func message(_ body: () throws -> Void) -> String {
      do {
        try body()
        return "no error"
      } catch { return "\(error)" }
    }

    // Weights count mismatch.
    #expect(
      message {
        _ = try MergedModel(files: ggufFiles, model: base, adapters: [adapter], weights: [0.5, 0.5])
      }
      .contains("2 weight(s) for 1 adapter(s)"))
    // An adapter for another model shape.
    var wide = base.config
    wide.intermediateSize = 80
    let other = try LoRAAdapter(config: LoRAConfig(r: 2, targetModules: ["up_proj"]), model: wide, seed: 1)
    #expect(
      message { _ = try MergedModel(files: ggufFiles, model: base, adapters: [other]) }.contains(
        "another model"))
    // Format and base that do not go together.
    let merge = try MergedModel(files: ggufFiles, model: base, adapters: [adapter])
    #expect(
      message { try merge.write(to: folder.path + "/x", format: .safetensors, dtype: .f32) }
        .contains("needs a Hugging Face folder base"))
    let folderMerge = try MergedModel(files: folderFiles, model: base, adapters: [adapter])
    #expect(
      message { try folderMerge.write(to: folder.path + "/x.gguf", format: .gguf, dtype: .f32) }
        .contains("GGUF output needs a GGUF base"))
    #expect(folder.contents.isEmpty)

    // An existing output is kept unless overwrite.
    let file = folder.path + "/m.gguf"
    try Data("keep".utf8).write(to: URL(fileURLWithPath: file))
    #expect(message { try merge.write(to: file, format: .gguf, dtype: .f32) }.contains("--overwrite"))
    #expect(try Data(contentsOf: URL(fileURLWithPath: file)) == Data("keep".utf8))
    try merge.write(to: file, format: .gguf, dtype: .f32, overwrite: true)
    #expect(try GGUFFile(path: file).tensors.count > 0)

    let out = folder.path + "/hf"
    try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: false)
    try Data("old".utf8).write(to: URL(fileURLWithPath: out + "/marker"))
    #expect(
      message { try folderMerge.write(to: out, format: .safetensors, dtype: .f32) }.contains("--overwrite"))
    #expect(FileManager.default.fileExists(atPath: out + "/marker"))
    try folderMerge.write(to: out, format: .safetensors, dtype: .f32, overwrite: true)
    #expect(!FileManager.default.fileExists(atPath: out + "/marker"))
    #expect(FileManager.default.fileExists(atPath: out + "/model.safetensors"))
    #expect(folder.contents == ["hf", "m.gguf"])
  }
}
