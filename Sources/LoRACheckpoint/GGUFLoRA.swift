import Foundation
import LoRAFormats
import LoRAKernels
import LoRAModel

/// LoRA adapters as llama.cpp reads them (`llama-cli --lora`, `llama-export-lora`), the
/// files its `convert_lora_to_gguf.py` writes:
///
/// - metadata `general.architecture` (llama.cpp's name of the base: "llama" for Llama and
///   Mistral, "qwen2"), `general.type` "adapter", `adapter.type` "lora",
///   `adapter.lora.alpha` (float32);
/// - per adapted linear, `blk.N.<tensor>.weight.lora_a` = A [R, IN] (ggml ne [IN, R]) and
///   `.lora_b` = B [OUT, R] (ne [R, OUT]), F32, where <tensor> is attn_q, attn_k, attn_v,
///   attn_output, ffn_gate, ffn_up or ffn_down;
/// - for Llama and Mistral, the rows of q and k's B permuted as llama.cpp's converter
///   permutes the base q/k rows (`LlamaWeights.permuteRows`); Qwen2 is not permuted.
///
/// llama.cpp applies y += (alpha / R)·B·A·x with one global alpha and R read from lora_b
/// (ne[0]); alpha 0 means a scale of 1. Our modules each have a scale s (alpha/r or, with
/// rsLoRA, alpha/√r, with per-module rank and alpha). The export therefore picks one global
/// alpha (the most common s·R over the modules, so most modules are written unchanged) and,
/// for any module where llama.cpp's alpha/R differs from s, writes B·s·R/alpha instead of B:
/// llama.cpp's update equals ours up to float rounding of that one factor.
extension LoRAAdapter {
  /// Why a GGUF LoRA file cannot be written or read.
  public struct GGUFLoRAError: Error, Equatable, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
  }

  /// llama.cpp's architecture name of a model of `architecture` ("mistral" converts to "llama").
  public static func llamaCppArchitecture(_ architecture: String) -> String {
    architecture == "mistral" ? "llama" : architecture
  }

  /// The GGUF base tensor name of `target` in `layer`, e.g. "blk.3.attn_q.weight".
  public static func ggufTensorName(layer: Int, target: LoRATarget) -> String {
    let names: [LoRATarget: String] = [
      .q: "attn_q", .k: "attn_k", .v: "attn_v", .o: "attn_output", .gate: "ffn_gate", .up: "ffn_up",
      .down: "ffn_down",
    ]
    return "blk.\(layer).\(names[target]!).weight"
  }

  /// Heads whose rows llama.cpp permutes in `target`'s weight (and its LoRA B), or nil.
  static func permutedHeads(_ target: LoRATarget, _ config: LlamaConfig) -> Int? {
    guard config.architecture == "llama" || config.architecture == "mistral" else { return nil }
    switch target {
    case .q: return config.heads
    case .k: return config.kvHeads
    default: return nil
    }
  }

  /// The global alpha written to `adapter.lora.alpha`: the most common s·R over the modules
  /// (ties go to the first module), so llama.cpp's alpha/R equals s on most modules.
  public var ggufLoRAAlpha: Float {
    var counts: [Double: Int] = [:]
    var order: [Double] = []
    for m in modules {
      let k = config.scale(rank: m.rank, alpha: m.alpha) * Double(m.rank)
      if counts[k] == nil { order.append(k) }
      counts[k, default: 0] += 1
    }
    let top = counts.values.max() ?? 1
    return Float(order.first { counts[$0]! == top } ?? 1)
  }

  /// The factor module `m`'s B is multiplied by so that llama.cpp's (alpha/R)·B'·A equals
  /// our s·B·A; exactly 1 when no folding is needed.
  func ggufFoldFactor(_ m: Module, alpha: Float) -> Float {
    let llamaCppScale = alpha / Float(m.rank)
    return m.scale == llamaCppScale ? 1 : Float(Double(m.scale) / Double(llamaCppScale))
  }

  /// Checks that every module fits `base` (layer range and weight shape).
  func checkFits(_ base: LlamaConfig, file: String) throws {
    for m in modules {
      let (out, input) = m.target.shape(base)
      guard m.layer < base.layers, m.outFeatures == out, m.inFeatures == input else {
        throw GGUFLoRAError(
          "\(file): the adapter's \(m.name) is \(m.outFeatures)×\(m.inFeatures) in layer \(m.layer), but the "
            + "base model has \(base.layers) layers and a \(m.target.rawValue) of \(out)×\(input); "
            + "was the adapter trained on another model?")
      }
    }
  }

  /// Writes the adapter as a llama.cpp GGUF LoRA file at `path` (atomically; an existing
  /// file is refused unless `overwrite`). `baseName` goes to `general.name`.
  public func saveGGUFLoRA(
    to path: String, base: LlamaConfig, baseName: String? = nil, overwrite: Bool = false
  )
    throws
  {
    try requireNoVirtualTokens(
      "a GGUF LoRA file (llama.cpp has no prompt or prefix tuning)",
      instead: "export --format peft writes the prompt-learning adapter beside the LoRA one")
    if initial != nil {
      return try plain().saveGGUFLoRA(to: path, base: base, baseName: baseName, overwrite: overwrite)
    }
    try requireNoDoRA(
      "a GGUF LoRA file (llama.cpp's LoRA)",
      instead: "export --format peft keeps use_dora, and merge writes the adapted model")
    try checkFits(base, file: path)
    let alpha = ggufLoRAAlpha
    var writer = GGUFWriter()
    writer.set("general.architecture", .string(Self.llamaCppArchitecture(base.architecture)))
    writer.set("general.type", .string("adapter"))
    if let baseName { writer.set("general.name", .string(baseName + " LoRA")) }
    writer.set("general.file_type", .uint32(0))  // all F32
    writer.set("adapter.type", .string("lora"))
    writer.set("adapter.lora.alpha", .float32(alpha))
    for m in modules {
      let name = Self.ggufTensorName(layer: m.layer, target: m.target)
      writer.addTensor(name + ".lora_a", m.a)
      let factor = ggufFoldFactor(m, alpha: alpha)
      let heads = Self.permutedHeads(m.target, base)
      writer.addTensor(name + ".lora_b", shape: m.b.shape) {
        var b = m.b
        if factor != 1 {
          b = Tensor(shape: m.b.shape, values: m.b.values.map { $0 * factor })
        }
        if let heads {
          let permuted = Tensor(zeros: b.shape)
          LlamaWeights.permuteRows(permuted, from: b, heads: heads)
          b = permuted
        }
        return b
      }
    }
    do { try writer.write(to: path, overwrite: overwrite) } catch let error as FormatError {
      throw GGUFLoRAError(error.description)
    }
  }

  /// Reads a llama.cpp GGUF LoRA file for `model`. The adapter gets llama.cpp's scale:
  /// `lora_alpha` is the file's alpha and each module's rank that of its lora_b (modules
  /// whose rank differs from the most common one go to `rank_pattern`), so
  /// scale·B·A equals what llama.cpp applies. q/k rows are un-permuted for Llama/Mistral.
  /// The file must adapt the same linears in every adapted layer.
  public static func loadGGUFLoRA(path: String, model: LlamaConfig) throws -> LoRAAdapter {
    let file: GGUFFile
    do { file = try GGUFFile(path: path) } catch let error as FormatError {
      throw GGUFLoRAError(error.description)
    }
    let meta = file.metadata
    guard meta["general.type"]?.string == "adapter", meta["adapter.type"]?.string == "lora" else {
      throw GGUFLoRAError(
        "\(path): not a GGUF LoRA adapter (general.type is \(meta["general.type"]?.summary ?? "missing"), "
          + "adapter.type is \(meta["adapter.type"]?.summary ?? "missing"); expected \"adapter\" and \"lora\")"
      )
    }
    let expected = llamaCppArchitecture(model.architecture)
    guard let architecture = meta["general.architecture"]?.string, architecture == expected else {
      throw GGUFLoRAError(
        "\(path): the adapter is for architecture \(meta["general.architecture"]?.summary ?? "(missing)"), "
          + "the model is \"\(expected)\"")
    }
    guard let fileAlpha = meta["adapter.lora.alpha"]?.double, fileAlpha.isFinite, fileAlpha >= 0 else {
      throw GGUFLoRAError("\(path): metadata adapter.lora.alpha is missing or not a number >= 0")
    }

    // Pair up blk.N.<tensor>.weight.lora_a / .lora_b.
    var pairs: [String: (a: String?, b: String?)] = [:]
    for t in file.tensors {
      let base: String
      if t.name.hasSuffix(".lora_a") {
        base = String(t.name.dropLast(7))
        pairs[base, default: (nil, nil)].a = t.name
      } else if t.name.hasSuffix(".lora_b") {
        base = String(t.name.dropLast(7))
        pairs[base, default: (nil, nil)].b = t.name
      } else {
        throw GGUFLoRAError(
          "\(path): tensor '\(t.name)' is not a lora_a or lora_b tensor; only LoRA on linear layers is supported"
        )
      }
    }
    var index: [String: (layer: Int, target: LoRATarget)] = [:]
    for layer in 0..<model.layers {
      for target in LoRATarget.allCases {
        index[ggufTensorName(layer: layer, target: target)] = (layer, target)
      }
    }
    var found: [(layer: Int, target: LoRATarget, a: GGUFTensorInfo, b: GGUFTensorInfo)] = []
    for (base, pair) in pairs.sorted(by: { $0.key < $1.key }) {
      guard let (layer, target) = index[base] else {
        throw GGUFLoRAError("\(path): '\(base)' is not a linear layer of this \(model.layers)-layer model")
      }
      guard let aName = pair.a, let bName = pair.b, let a = file.info(aName), let b = file.info(bName) else {
        throw GGUFLoRAError("\(path): '\(base)' has only one of lora_a and lora_b")
      }
      let (out, input) = target.shape(model)
      guard a.shape.count == 2, b.shape.count == 2, a.shape[1] == input, b.shape[0] == out,
        a.shape[0] == b.shape[1]
      else {
        throw GGUFLoRAError(
          "\(path): '\(base)' has lora_a \(a.shape) and lora_b \(b.shape) (row-major); the model expects "
            + "[R, \(input)] and [\(out), R]")
      }
      found.append((layer, target, a, b))
    }
    guard !found.isEmpty else { throw GGUFLoRAError("\(path): the adapter has no LoRA tensors") }
    let layers = Set(found.map(\.layer)).sorted()
    let targets = Set(found.map(\.target)).sorted()
    guard found.count == layers.count * targets.count else {
      throw GGUFLoRAError(
        "\(path): the adapter covers \(found.count) linears, not every one of \(targets.map(\.rawValue)) in "
          + "layers \(layers); such an irregular adapter cannot be represented here")
    }

    // One rank for most modules, rank_pattern (and, for alpha 0, alpha_pattern) for the rest.
    var rankCounts: [Int: Int] = [:]
    for f in found { rankCounts[f.b.shape[1], default: 0] += 1 }
    let rank = rankCounts.max { $0.value < $1.value || ($0.value == $1.value && $0.key > $1.key) }!.key
    var rankPattern: [String: Int] = [:]
    var alphaPattern: [String: Double] = [:]
    for f in found where f.b.shape[1] != rank {
      let key = NSRegularExpression.escapedPattern(for: f.target.moduleName(layer: f.layer))
      rankPattern[key] = f.b.shape[1]
      // llama.cpp's alpha 0 means scale 1 whatever the rank: alpha = R per module.
      if fileAlpha == 0 { alphaPattern[key] = Double(f.b.shape[1]) }
    }
    let config = LoRAConfig(
      r: rank, loraAlpha: fileAlpha == 0 ? Double(rank) : fileAlpha, loraDropout: 0,
      targetModules: targets.map(\.rawValue), layersToTransform: layers.count == model.layers ? nil : layers,
      useRslora: false, rankPattern: rankPattern, alphaPattern: alphaPattern, initialization: "zero")
    let adapter: LoRAAdapter
    do { adapter = try LoRAAdapter(config: config, model: model, seed: 0) } catch {
      throw GGUFLoRAError("\(path): \(error)")
    }
    do {
      for f in found {
        guard let m = adapter.module(layer: f.layer, target: f.target) else { continue }
        m.a.copy(from: try file.tensor(f.a.name))
        let b = try file.tensor(f.b.name)
        if let heads = permutedHeads(f.target, model) {
          LlamaWeights.unpermuteRows(m.b, from: b, heads: heads)
        } else {
          m.b.copy(from: b)
        }
      }
    } catch let error as FormatError {
      throw GGUFLoRAError(error.description)
    }
    return adapter
  }
}
