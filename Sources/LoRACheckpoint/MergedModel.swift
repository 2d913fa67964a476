import Foundation
import LoRAFormats
import LoRAKernels
import LoRAModel

#if canImport(Glibc)
  import Glibc
#endif

/// A base model with one or more LoRA adapters merged into its weights:
/// W = W0 + Σᵢ wᵢ·sᵢ·Bᵢ·Aᵢ for every adapted linear (sᵢ the adapter's scale, wᵢ its weight),
/// written as a model file that needs no adapter at inference:
///
/// - GGUF (from a GGUF base): every metadata key of the base (tokenizer, hyperparameters)
///   is copied, every tensor is written in the base's order as F32, F16 or BF16 (1-D tensors
///   such as norms stay F32, as llama.cpp's converter keeps them), and merged q/k rows of
///   Llama/Mistral are permuted back the way llama.cpp stores them.
/// - A Hugging Face folder (from a Hugging Face folder base): `model.safetensors` (F32, F16
///   or BF16), the base's `config.json` with its dtype updated, and the tokenizer files.
///
/// The base's frozen weights are shared and read-only: merged tensors are new copies.
public struct MergedModel {
  /// The file format written.
  public enum Format: String, Sendable, CaseIterable {
    case gguf
    case safetensors
  }

  /// The element type of the written weights.
  public enum DType: String, Sendable, CaseIterable {
    case f32, f16, bf16

    var ggml: GGMLType {
      switch self {
      case .f32: return .f32
      case .f16: return .f16
      case .bf16: return .bf16
      }
    }
    var safetensors: SafetensorsWriter.DType {
      switch self {
      case .f32: return .f32
      case .f16: return .f16
      case .bf16: return .bf16
      }
    }
    /// PyTorch's name, for config.json.
    var torchName: String {
      switch self {
      case .f32: return "float32"
      case .f16: return "float16"
      case .bf16: return "bfloat16"
      }
    }
    /// llama.cpp's `general.file_type` (LLAMA_FTYPE_ALL_F32, MOSTLY_F16, MOSTLY_BF16).
    var llamaFileType: UInt32 {
      switch self {
      case .f32: return 0
      case .f16: return 1
      case .bf16: return 32
      }
    }
  }

  /// Why a merge cannot be done or written; the message names the input and what to do.
  public struct MergeError: Error, Equatable, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
  }

  public let files: ModelFiles
  public let model: LlamaModel
  public let adapters: [LoRAAdapter]
  /// One weight per adapter.
  public let weights: [Float]

  /// Checks that every adapter fits `model` and that there is one weight per adapter
  /// (nil: every weight 1).
  public init(files: ModelFiles, model: LlamaModel, adapters: [LoRAAdapter], weights: [Double]? = nil) throws
  {
    guard !adapters.isEmpty else { throw MergeError("no adapter to merge; give at least one") }
    for adapter in adapters {
      try adapter.requireNoVirtualTokens(
        "a merged model", instead: "serve or generate with the adapter applied (--adapter) instead")
    }
    let weights = weights ?? Array(repeating: 1, count: adapters.count)
    guard weights.count == adapters.count else {
      throw MergeError(
        "\(weights.count) weight(s) for \(adapters.count) adapter(s); give one weight per adapter, in the same order"
      )
    }
    for (i, w) in weights.enumerated() where !w.isFinite {
      throw MergeError("weight \(i + 1) is \(w); expected a finite number")
    }
    for (i, adapter) in adapters.enumerated() {
      do { try adapter.checkFits(model.config, file: "adapter \(i + 1)") } catch let error
        as LoRAAdapter.GGUFLoRAError
      {
        throw MergeError(error.description + " (base: \(files.path))")
      }
    }
    self.files = files
    self.model = model
    self.adapters = adapters
    self.weights = weights.map(Float.init)
  }

  /// Refuses combinations of base and output format that cannot be written faithfully,
  /// before anything is loaded.
  public static func check(format: Format, base: ModelFiles) throws {
    switch (format, base) {
    case (.gguf, .huggingFace(let folder)):
      throw MergeError(
        "\(folder): GGUF output needs a GGUF base (its tokenizer and metadata are copied into the merged file); "
          + "merge with --format safetensors and convert the folder with llama.cpp's convert_hf_to_gguf.py, "
          + "or pass the GGUF file of this base model")
    case (.safetensors, .gguf(let file)):
      throw MergeError(
        "\(file.path): safetensors output needs a Hugging Face folder base (its config.json and tokenizer "
          + "files are copied; a GGUF tokenizer is not converted to tokenizer.json here); use --format gguf, "
          + "or pass the Hugging Face folder of this base model")
    default: return
    }
  }

  /// The frozen base weight of `target` in `layer`, Hugging Face layout: [OUT, IN].
  func baseWeight(layer: Int, target: LoRATarget) -> Tensor {
    model.weights.layers[layer].matrix(target).widened()
  }

  /// Whether any adapter adapts `target` of `layer`.
  public func isAdapted(layer: Int, target: LoRATarget) -> Bool {
    adapters.contains { $0.module(layer: layer, target: target) != nil }
  }

  /// W0 + Σᵢ wᵢ·ΔWᵢ of `target` in `layer`, as a new tensor in Hugging Face layout: [OUT, IN].
  /// ΔW = s·B·A, or for DoRA m ⊙ (W0 + s·B·A)/‖W0 + s·B·A‖ − W0 (at weight 1 PEFT's
  /// `merge_and_unload`).
  public func mergedWeight(layer: Int, target: LoRATarget) -> Tensor {
    let base = baseWeight(layer: layer, target: target)
    let merged = Tensor(zeros: base.shape)
    merged.copy(from: base)
    for (adapter, weight) in zip(adapters, weights) {
      guard let m = adapter.module(layer: layer, target: target) else { continue }
      guard let magnitude = m.magnitude else {
        LowRank.merge(into: merged, a: m.a, b: m.b, scale: weight * m.scale)
        continue
      }
      let adapted = base.clone()
      LowRank.merge(into: adapted, a: m.a, b: m.b, scale: m.scale)
      DoRA.normalizeRows(adapted, magnitude: magnitude)
      adapted.subtract(base)
      adapted.scale(by: weight)
      merged.add(adapted)
    }
    return merged
  }

  /// Writes the merged model to `path` as `format` with weights of `dtype`. The output
  /// appears complete or not at all; an existing one is replaced only with `overwrite`.
  public func write(to path: String, format: Format, dtype: DType, overwrite: Bool = false) throws {
    try Self.check(format: format, base: files)
    let target = URL(fileURLWithPath: path).standardizedFileURL.path
    if !overwrite && FileManager.default.fileExists(atPath: target) {
      throw MergeError("\(target) already exists; choose another output or pass --overwrite")
    }
    switch files {
    case .gguf(let gguf): try writeGGUF(to: target, base: gguf, dtype: dtype, overwrite: overwrite)
    case .huggingFace(let folder):
      try writeFolder(to: target, base: folder, dtype: dtype, overwrite: overwrite)
    }
  }

  /// The (layer, target) of a GGUF linear weight name such as "blk.3.attn_q.weight".
  static func linear(ofGGUFName name: String, layers: Int) -> (layer: Int, target: LoRATarget)? {
    let parts = name.split(separator: ".")
    guard parts.count == 4, parts[0] == "blk", parts[3] == "weight", let layer = Int(parts[1]), layer < layers
    else { return nil }
    for target in LoRATarget.allCases
    where LoRAAdapter.ggufTensorName(layer: layer, target: target) == name {
      return (layer, target)
    }
    return nil
  }

  private func writeGGUF(to path: String, base: GGUFFile, dtype: DType, overwrite: Bool) throws {
    var writer = GGUFWriter(alignment: 32)
    let dropped: Set<String> = ["general.alignment", "general.file_type", "general.quantization_version"]
    for key in base.metadataKeys where !dropped.contains(key) {
      writer.set(key, base.metadata[key]!)
    }
    writer.set("general.file_type", .uint32(dtype.llamaFileType))
    for info in base.tensors {
      guard info.type != nil else {
        throw MergeError(
          "\(base.path): tensor '\(info.name)' has type \(info.typeName), which cannot be converted; "
            + "use a base in F32, F16, BF16, Q4_0/1, Q5_0/1, Q8_0 or Q4_K/Q5_K/Q6_K")
      }
      let type: GGMLType = info.dimensions.count == 1 ? .f32 : dtype.ggml
      if let (layer, target) = Self.linear(ofGGUFName: info.name, layers: model.config.layers),
        isAdapted(layer: layer, target: target)
      {
        let heads = LoRAAdapter.permutedHeads(target, model.config)
        writer.addTensor(info.name, shape: info.shape, type: type) {
          let merged = mergedWeight(layer: layer, target: target)
          guard let heads else { return merged }
          let permuted = Tensor(zeros: merged.shape)
          LlamaWeights.permuteRows(permuted, from: merged, heads: heads)
          return permuted
        }
      } else {
        writer.addTensor(info.name, shape: info.shape, type: type) { try base.tensor(info.name) }
      }
    }
    do { try writer.write(to: path, overwrite: overwrite) } catch let error as FormatError {
      throw MergeError(error.description)
    }
  }

  /// Files of a Hugging Face folder copied beside the merged weights (those present).
  public static let folderFilesCopied = [
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
    "vocab.json", "merges.txt", "tokenizer.model", "added_tokens.json", "chat_template.jinja",
    "chat_template.json",
  ]

  private func writeFolder(to path: String, base: String, dtype: DType, overwrite: Bool) throws {
    let files = FileManager.default
    let baseURL = URL(fileURLWithPath: base)
    let configURL = baseURL.appendingPathComponent("config.json")
    guard let data = try? Data(contentsOf: configURL),
      var config = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
    else {
      throw MergeError("\(configURL.path): cannot read it as a JSON object")
    }
    if config["dtype"] != nil { config["dtype"] = dtype.torchName }
    config["torch_dtype"] = dtype.torchName

    // Every tensor of the model, Hugging Face names, merged where adapted.
    let c = model.config
    let w = model.weights
    let st = dtype.safetensors
    var tensors: [(name: String, tensor: Tensor, dtype: SafetensorsWriter.DType)] = [
      ("model.embed_tokens.weight", w.embedding.widened(), st)
    ]
    for l in 0..<c.layers {
      let p = "model.layers.\(l)."
      let layer = w.layers[l]
      tensors.append((p + "input_layernorm.weight", layer.attentionNorm, st))
      tensors.append((p + "post_attention_layernorm.weight", layer.mlpNorm, st))
      for target in LoRATarget.allCases {
        let weight =
          isAdapted(layer: l, target: target)
          ? mergedWeight(layer: l, target: target) : baseWeight(layer: l, target: target)
        tensors.append((p + "\(target.block).\(target.rawValue).weight", weight, st))
      }
      for (name, bias) in [("q_proj", layer.qBias), ("k_proj", layer.kBias), ("v_proj", layer.vBias)] {
        if let bias { tensors.append((p + "self_attn.\(name).bias", bias, st)) }
      }
    }
    tensors.append(("model.norm.weight", w.finalNorm, st))
    if !w.output.isIdentical(to: w.embedding) { tensors.append(("lm_head.weight", w.output.widened(), st)) }

    let target = URL(fileURLWithPath: path)
    let parent = target.deletingLastPathComponent()
    guard files.fileExists(atPath: parent.path) else {
      throw MergeError("\(path): the folder \(parent.path) does not exist")
    }
    let tag = UUID().uuidString.prefix(8)
    let staging = parent.appendingPathComponent(".\(target.lastPathComponent).partial-\(tag)")
    do {
      try files.createDirectory(at: staging, withIntermediateDirectories: false)
      try SafetensorsWriter.write(
        tensors, metadata: ["format": "pt"], to: staging.appendingPathComponent("model.safetensors").path)
      try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys])
        .write(to: staging.appendingPathComponent("config.json"))
      for name in Self.folderFilesCopied
      where files.fileExists(atPath: baseURL.appendingPathComponent(name).path) {
        try files.copyItem(at: baseURL.appendingPathComponent(name), to: staging.appendingPathComponent(name))
      }
      // Move an existing output aside, the new one in, then drop the old one.
      let aside = parent.appendingPathComponent(".\(target.lastPathComponent).old-\(tag)")
      let replacing = files.fileExists(atPath: target.path)
      if replacing {
        guard overwrite else {
          throw MergeError("\(target.path) already exists; choose another output or pass --overwrite")
        }
        guard rename(target.path, aside.path) == 0 else {
          throw MergeError(
            "cannot move the existing \(target.path) aside: \(String(cString: strerror(errno)))")
        }
      }
      guard rename(staging.path, target.path) == 0 else {
        let reason = String(cString: strerror(errno))
        if replacing { _ = rename(aside.path, target.path) }
        throw MergeError("cannot move the merged model into \(target.path): \(reason)")
      }
      if replacing { try? files.removeItem(at: aside) }
    } catch {
      try? files.removeItem(at: staging)
      if let error = error as? MergeError { throw error }
      throw MergeError("cannot write the merged model to \(target.path): \(error)")
    }
  }
}
