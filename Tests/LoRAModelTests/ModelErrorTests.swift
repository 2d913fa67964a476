import Foundation
import Testing

@testable import LoRAFormats
@testable import LoRAModel

/// Bad model files: each fails with a message naming the file and what is wrong.
@Suite struct ModelErrorTests {
  /// A copy of a fixture folder in a temporary place, removed afterwards.
  final class Copy {
    let path: String
    init(_ fixture: String) throws {
      path = NSTemporaryDirectory() + "lora-model-test-" + UUID().uuidString
      try FileManager.default.copyItem(atPath: Fixtures.path(fixture), toPath: path)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }

    func editConfig(_ edit: (inout [String: Any]) -> Void) throws {
      let url = URL(fileURLWithPath: path + "/config.json")
      var json = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
      edit(&json)
      try JSONSerialization.data(withJSONObject: json).write(to: url)
    }
  }

  @Test func shapeThatDisagreesWithTheConfigNamesTensorAndShapes() throws {
    let copy = try Copy("tiny-tied")
    try copy.editConfig { $0["intermediate_size"] = 48 }
    #expect {
      try LlamaModel.load(path: copy.path)
    } throws: { error in
      "\(error)" == "\(copy.path): tensor 'model.layers.0.mlp.gate_proj.weight' has shape [64, 32], "
        + "the configuration expects [48, 32]"
    }
  }

  @Test func missingTensorIsNamed() throws {
    let copy = try Copy("tiny-tied")
    try copy.editConfig { $0["num_hidden_layers"] = 3 }
    #expect {
      try LlamaModel.load(path: copy.path)
    } throws: { error in
      "\(error)".contains("has no tensor 'model.layers.2.input_layernorm.weight'")
    }
  }

  @Test func unsupportedArchitectureInConfigJSON() throws {
    let copy = try Copy("tiny-tied")
    try copy.editConfig { $0["model_type"] = "gpt2" }
    #expect(
      throws: ModelError.unsupportedArchitecture(file: copy.path + "/config.json", architecture: "gpt2")
    ) {
      try LlamaModel.load(path: copy.path)
    }
  }

  /// Qwen2's own sliding window (only above max_window_layers) is refused by name; Qwen2's
  /// unused `sliding_window` is ignored; a window of 0 is refused.
  @Test func slidingWindowsOutsideMistralsAreNamed() throws {
    let qwen = try Copy("tiny-qwen2")
    try qwen.editConfig {
      $0["sliding_window"] = 4
      $0["use_sliding_window"] = false
    }
    #expect(try LlamaModel.load(path: qwen.path).model.config.slidingWindow == nil)
    try qwen.editConfig { $0["use_sliding_window"] = true }
    #expect {
      try LlamaModel.load(path: qwen.path)
    } throws: { error in
      "\(error)".hasPrefix("\(qwen.path)/config.json: use_sliding_window is true")
        && "\(error)".contains("max_window_layers")
    }
    let mistral = try Copy("tiny-mistral")
    #expect(try LlamaModel.load(path: mistral.path).model.config.slidingWindow == 3)
    try mistral.editConfig { $0["sliding_window"] = 0 }
    #expect {
      try LlamaModel.load(path: mistral.path)
    } throws: { error in
      "\(error)" == "\(mistral.path)/config.json: sliding_window is 0, expected a positive number"
    }
  }

  @Test func missingConfigKeyIsNamed() throws {
    let copy = try Copy("tiny-tied")
    try copy.editConfig { $0.removeValue(forKey: "hidden_size") }
    #expect {
      try LlamaModel.load(path: copy.path)
    } throws: { error in
      "\(error)" == "\(copy.path)/config.json: missing required key 'hidden_size'"
    }
  }

  @Test func unsupportedArchitectureInGGUF() throws {
    let copy = try Copy("tiny-tied")
    let file = copy.path + "/model.gguf"
    var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: file)))
    // general.architecture is the first "llama" string value: make it "bloom".
    let needle: [UInt8] = [5, 0, 0, 0, 0, 0, 0, 0] + Array("llama".utf8)
    let at = try #require(
      (0..<(bytes.count - needle.count)).first { Array(bytes[$0..<($0 + needle.count)]) == needle })
    bytes.replaceSubrange((at + 8)..<(at + 13), with: Array("bloom".utf8))
    try Data(bytes).write(to: URL(fileURLWithPath: file))
    #expect {
      try LlamaModel.load(path: file)
    } throws: { error in
      "\(error)"
        == "\(file): architecture 'bloom' is not a Llama-family decoder (supported: llama, mistral, qwen2)"
    }
  }

  @Test func truncatedGGUFIsNamed() throws {
    let copy = try Copy("tiny-tied")
    let file = copy.path + "/model.gguf"
    let bytes = try Data(contentsOf: URL(fileURLWithPath: file))
    try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: file))
    #expect {
      try LlamaModel.load(path: file)
    } throws: { error in
      "\(error)".hasPrefix("\(file): truncated: the file ends inside the data of tensor")
    }
  }

  @Test func folderWithoutConfigIsNamed() throws {
    let copy = try Copy("tiny-tied")
    try FileManager.default.removeItem(atPath: copy.path + "/config.json")
    #expect(
      throws: FormatError.invalid(
        file: copy.path, message: "is a folder without config.json; expected a Hugging Face model folder")
    ) {
      try LlamaModel.load(path: copy.path)
    }
  }
}
