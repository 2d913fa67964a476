import Foundation
import LoRAFormats
import LoRAKernels

extension LlamaModel {
  /// Where a model came from, for `inspect` and reports.
  public struct Origin: Sendable {
    /// "GGUF v3" or "Hugging Face folder".
    public var format: String
    public var path: String
    /// Tensors used in place from the file / converted at load.
    public var inPlaceTensors: Int
    public var convertedTensors: Int
    /// How the matrices are held, and the bytes all weights take.
    public var precision: StoredPrecision
    public var weightBytes: Int
    public var loadSeconds: Double
  }

  /// Loads a GGUF file or a Hugging Face folder (`config.json` + safetensors).
  public static func load(path: String) throws -> (model: LlamaModel, origin: Origin) {
    try load(ModelFiles.open(path))
  }

  /// Loads the model of files already opened (so the tokenizer can share them).
  ///
  /// - Parameters:
  ///   - storage: where the converted weights go (default: this process's own memory).
  ///   - precision: how the matrices are held (`BasePrecision.resolve()` turns a user's
  ///     choice into one).
  public static func load(
    _ files: ModelFiles, storage: WeightStorage? = nil, precision: StoredPrecision = .f32
  ) throws -> (
    model: LlamaModel, origin: Origin
  ) {
    let started = Date()
    let config: LlamaConfig
    let weights: LlamaWeights
    let format: String
    switch files {
    case .huggingFace(let folder):
      config = try LlamaConfig(configJSON: URL(fileURLWithPath: folder).appendingPathComponent("config.json"))
      weights = try LlamaWeights(
        config: config, source: SafetensorsWeightSource(collection: SafetensorsCollection(folder: folder)),
        storage: storage, precision: precision)
      format = "Hugging Face folder"
    case .gguf(let gguf):
      config = try LlamaConfig(gguf: gguf)
      weights = try LlamaWeights(
        config: config, source: GGUFWeightSource(gguf: gguf, config: config), storage: storage,
        precision: precision)
      format = "GGUF v\(gguf.version)"
    }
    let model = LlamaModel(config: config, weights: weights)
    return (
      model,
      Origin(
        format: format, path: files.path, inPlaceTensors: weights.inPlaceTensors,
        convertedTensors: weights.convertedTensors, precision: weights.precision,
        weightBytes: weights.heldBytes, loadSeconds: Date().timeIntervalSince(started))
    )
  }
}
