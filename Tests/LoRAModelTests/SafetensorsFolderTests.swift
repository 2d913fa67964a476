import Foundation
import LoRAKernels
import Testing

@testable import LoRAFormats
@testable import LoRAModel

/// Hugging Face folders in the other shapes people have: sharded, F16 and BF16.
@Suite struct SafetensorsFolderTests {
  /// Writes tiny-tied's tensors into a new folder, `shards` files, stored as `dtype`.
  func rewrite(shards: Int, dtype: SafetensorsWriter.DType) throws -> String {
    let folder = NSTemporaryDirectory() + "lora-shards-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    try FileManager.default.copyItem(
      atPath: Fixtures.path("tiny-tied/config.json"), toPath: folder + "/config.json")
    let source = try SafetensorsFile(path: Fixtures.path("tiny-tied/model.safetensors"))
    let names = source.tensors.keys.sorted()
    var weightMap: [String: String] = [:]
    for shard in 0..<shards {
      let file =
        shards == 1
        ? "model.safetensors" : String(format: "model-%05d-of-%05d.safetensors", shard + 1, shards)
      let mine = names.enumerated().filter { $0.offset % shards == shard }.map(\.element)
      try SafetensorsWriter.write(mine.map { ($0, try source.tensor($0), dtype) }, to: folder + "/" + file)
      for name in mine { weightMap[name] = file }
    }
    if shards > 1 {
      let index = try JSONSerialization.data(withJSONObject: ["metadata": [:], "weight_map": weightMap])
      try index.write(to: URL(fileURLWithPath: folder + "/model.safetensors.index.json"))
    }
    return folder
  }

  @Test func shardedFolderLoadsTheSameModel() throws {
    let folder = try rewrite(shards: 3, dtype: .f32)
    defer { try? FileManager.default.removeItem(atPath: folder) }
    let (sharded, _) = try LlamaModel.load(path: folder)
    let (single, _) = try LlamaModel.load(path: Fixtures.path("tiny-tied"))
    let reference = try Fixtures.reference("tiny-tied")
    #expect(maxLogitError(sharded, reference) == maxLogitError(single, reference))
    #expect(try SafetensorsCollection(folder: folder).files.count == 3)
  }

  @Test(arguments: [SafetensorsWriter.DType.f16, .bf16])
  func halfPrecisionFoldersAreWidened(dtype: SafetensorsWriter.DType) throws {
    let folder = try rewrite(shards: 1, dtype: dtype)
    defer { try? FileManager.default.removeItem(atPath: folder) }
    let (model, origin) = try LlamaModel.load(path: folder)
    #expect(origin.inPlaceTensors == 0)
    let (exact, _) = try LlamaModel.load(path: Fixtures.path("tiny-tied"))
    let original = exact.weights.layers[1].down.widened().values
    let widened = model.weights.layers[1].down.widened().values
    let tolerance: Float = dtype == .f16 ? 1e-3 : 8e-3  // relative precision of the format
    for (a, b) in zip(widened, original) { #expect(abs(a - b) <= tolerance * max(abs(b), 1e-2)) }
  }

  @Test func writerRoundTripsExactly() throws {
    let folder = NSTemporaryDirectory() + "lora-writer-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: folder) }
    let t = Tensor(shape: [2, 3], values: [1.5, -2, 0, 3.25, 1e-3, -7])
    try SafetensorsWriter.write(
      [("a.weight", t, .f32)], metadata: ["format": "pt"], to: folder + "/x.safetensors")
    let file = try SafetensorsFile(path: folder + "/x.safetensors")
    #expect(file.metadata == ["format": "pt"])
    #expect(try file.tensor("a.weight").values == t.values)
    #expect(file.tensors["a.weight"]?.shape == [2, 3])
  }

  @Test func corruptHeaderIsNamed() throws {
    let folder = NSTemporaryDirectory() + "lora-bad-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: folder) }
    let path = folder + "/model.safetensors"
    try Data([16, 0, 0, 0, 0, 0, 0, 0] + Array("{not json at all".utf8)).write(to: URL(fileURLWithPath: path))
    #expect(throws: FormatError.invalid(file: path, message: "the safetensors header is not a JSON object")) {
      try SafetensorsFile(path: path)
    }
    try Data([0, 1, 0, 0, 0, 0, 0, 0]).write(to: URL(fileURLWithPath: path))
    #expect {
      try SafetensorsFile(path: path)
    } throws: {
      "\($0)".contains("truncated: the file ends inside the safetensors header (256 bytes declared)")
    }
  }
}
