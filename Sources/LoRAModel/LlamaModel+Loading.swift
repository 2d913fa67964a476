import Foundation
import LoRAFormats

extension LlamaModel {
  /// Where a model came from, for `inspect` and reports.
  public struct Origin: Sendable {
    /// "GGUF v3" or "Hugging Face folder".
    public var format: String
    public var path: String
    /// Tensors used in place from the file / converted to Float32 at load.
    public var inPlaceTensors: Int
    public var convertedTensors: Int
    public var loadSeconds: Double
  }

  /// Loads a GGUF file or a Hugging Face folder (`config.json` + safetensors).
  public static func load(path: String) throws -> (model: LlamaModel, origin: Origin) {
    let started = Date()
    var isFolder: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
      throw FormatError.unreadable(file: path, reason: "no such file or folder")
    }
    let config: LlamaConfig
    let weights: LlamaWeights
    let format: String
    if isFolder.boolValue {
      config = try LlamaConfig(configJSON: URL(fileURLWithPath: path).appendingPathComponent("config.json"))
      weights = try LlamaWeights(config: config, source: SafetensorsWeightSource(collection: SafetensorsCollection(folder: path)))
      format = "Hugging Face folder"
    } else {
      let gguf = try GGUFFile(path: path)
      config = try LlamaConfig(gguf: gguf)
      weights = try LlamaWeights(config: config, source: GGUFWeightSource(gguf: gguf, config: config))
      format = "GGUF v\(gguf.version)"
    }
    let model = LlamaModel(config: config, weights: weights)
    return (
      model,
      Origin(
        format: format, path: path, inPlaceTensors: weights.inPlaceTensors,
        convertedTensors: weights.convertedTensors, loadSeconds: Date().timeIntervalSince(started))
    )
  }
}
