import Foundation
import Testing

@testable import swift_lora_dist

/// `merge` through the built binary: merge then generate from the merged file, and bad input.
@Suite struct MergeCommandTests {
  static let fixtures = ModelCommandTests.fixtures
  static let model = ModelCommandTests.defaultModel
  static var modelAvailable: Bool { FileManager.default.fileExists(atPath: model) }

  /// Writes a PEFT adapter folder for SmolLM2-135M by hand (q_proj and v_proj of every
  /// layer, r 2, alpha 16; A and B filled with fixed nonzero patterns).
  static func writeAdapter(to folder: String) throws {
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    let config = """
      {"peft_type": "LORA", "r": 2, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"],
       "bias": "none", "use_rslora": false, "task_type": "CAUSAL_LM"}
      """
    try config.write(toFile: folder + "/adapter_config.json", atomically: true, encoding: .utf8)
    var tensors: [(String, [Int], (Int) -> Float)] = []
    for l in 0..<30 {
      let prefix = "base_model.model.model.layers.\(l).self_attn."
      let x = 0.1 * Double(l)
      let aQ: (Int) -> Float = { 0.1 * Float(sin(Double($0) + x)) }
      let bQ: (Int) -> Float = { 0.1 * Float(cos(Double($0) * 0.7 + x)) }
      let aV: (Int) -> Float = { 0.1 * Float(cos(Double($0) * 1.3 + x)) }
      let bV: (Int) -> Float = { 0.1 * Float(sin(Double($0) * 0.3 + x)) }
      tensors.append((prefix + "q_proj.lora_A.weight", [2, 576], aQ))
      tensors.append((prefix + "q_proj.lora_B.weight", [576, 2], bQ))
      tensors.append((prefix + "v_proj.lora_A.weight", [2, 576], aV))
      tensors.append((prefix + "v_proj.lora_B.weight", [192, 2], bV))
    }
    var header: [String: Any] = [:]
    var payload: [UInt8] = []
    for (name, shape, value) in tensors {
      let count = shape.reduce(1, *)
      header[name] = [
        "dtype": "F32", "shape": shape, "data_offsets": [payload.count, payload.count + 4 * count],
      ]
      for i in 0..<count { withUnsafeBytes(of: value(i).bitPattern.littleEndian) { payload += $0 } }
    }
    var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
    while json.count % 8 != 0 { json.append(0x20) }
    var file = Data()
    withUnsafeBytes(of: UInt64(json.count).littleEndian) { file.append(contentsOf: $0) }
    file.append(json)
    file.append(contentsOf: payload)
    try file.write(to: URL(fileURLWithPath: folder + "/adapter_model.safetensors"))
  }

  func generate(_ arguments: [String]) throws -> GenerateResult {
    let outcome = try CommandRunner.run(
      ["generate", "--prompt", "The capital of France is", "--max-tokens", "6", "--json"] + arguments)
    #expect(outcome.status == 0, "\(outcome.errors)")
    return try JSONDecoder().decode(GenerateResult.self, from: Data(outcome.output.utf8))
  }

  @Test(.enabled(if: modelAvailable, "the default model is not in the cache"))
  func mergedGGUFGeneratesWhatBasePlusAdapterGenerates() throws {
    let folder = try TrainCommandTests.Folder()
    let adapter = folder.path + "/adapter"
    try Self.writeAdapter(to: adapter)
    let merged = folder.path + "/merged.gguf"
    let outcome = try CommandRunner.run([
      "merge", "--model", Self.model, "--adapter", adapter, "--output", merged,
    ])
    #expect(outcome.status == 0, "\(outcome.errors)")
    #expect(outcome.output.contains("merged 1 adapter(s) into \(merged) (gguf, f32"))

    let withAdapter = try generate(["--model", Self.model, "--adapter", adapter])
    let fromMerged = try generate(["--model", merged])
    let base = try generate(["--model", Self.model])
    #expect(fromMerged.ids == withAdapter.ids)
    #expect(fromMerged.text == withAdapter.text)
    #expect(base.ids != withAdapter.ids, "the adapter changes the greedy continuation")

    // A second merge into the same file is refused and leaves it as it was.
    let before = try FileManager.default.attributesOfItem(atPath: merged)[.size] as? Int
    let again = try CommandRunner.run([
      "merge", "--model", Self.model, "--adapter", adapter, "--output", merged, "--dtype", "f16",
    ])
    #expect(again.status != 0)
    #expect(again.errors.contains("already exists") && again.errors.contains("--overwrite"))
    #expect(try FileManager.default.attributesOfItem(atPath: merged)[.size] as? Int == before)
  }

  @Test func mismatchedWeightsAndFormatsAreRefusedBeforeWriting() throws {
    let folder = try TrainCommandTests.Folder()
    let counts = try CommandRunner.run([
      "merge", "--model", Self.fixtures + "/tiny-tied", "--adapter", "a", "--adapter", "b", "--weight", "0.5",
      "--output", folder.path + "/x.gguf",
    ])
    #expect(counts.status != 0)
    #expect(counts.errors.contains("1 --weight value(s) for 2 --adapter(s)"))

    // GGUF output from a Hugging Face folder base: refused with what to do instead.
    let adapter = folder.path + "/adapter"
    try FileManager.default.createDirectory(atPath: adapter, withIntermediateDirectories: true)
    let format = try CommandRunner.run([
      "merge", "--model", Self.fixtures + "/tiny-tied", "--adapter", adapter, "--output",
      folder.path + "/x.gguf",
    ])
    #expect(format.status != 0)
    #expect(format.errors.contains("GGUF output needs a GGUF base"))
    #expect(format.errors.contains("--format safetensors"))
    #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path) == ["adapter"])
  }
}
