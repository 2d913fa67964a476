import LoRAFormats
import LoRAKernels

/// Where frozen base weights come from, addressed by Hugging Face tensor names.
protocol WeightSource {
  /// The file or folder, for messages.
  var path: String { get }
  /// Row-major shape of tensor `name`, or nil when the source lacks it.
  func shape(of name: String) -> [Int]?
  /// The tensor used directly from the file (F32, aligned, no conversion needed), or nil.
  func inPlace(_ name: String) throws -> Tensor?
  /// Converts tensor `name` to Float32 in Hugging Face layout into `destination`.
  func load(_ name: String, into destination: Tensor) throws
  /// The tensor used directly from the file when it is stored as BF16 in Hugging Face
  /// layout, or nil.
  func inPlaceBF16(_ name: String) -> BF16Tensor?
  /// Drops this process's resident pages of tensor `name` in the file (once converted).
  func releasePages(_ name: String)
}

/// A GGUF file as llama.cpp's converter writes it: its own tensor names, and for the
/// "llama" architecture the q and k projection rows permuted for its RoPE kernel. Loading
/// maps the names and undoes the permutation, so the model always holds Hugging Face's
/// layout (the one PEFT adapters assume).
struct GGUFWeightSource: WeightSource {
  let gguf: GGUFFile
  let config: LlamaConfig
  var path: String { gguf.path }

  /// The GGUF name of a Hugging Face tensor name.
  static func ggufName(_ name: String) -> String {
    switch name {
    case "model.embed_tokens.weight": return "token_embd.weight"
    case "model.norm.weight": return "output_norm.weight"
    case "lm_head.weight": return "output.weight"
    case "rope_freqs.weight": return "rope_freqs.weight"
    default: break
    }
    let parts = name.split(separator: ".")
    guard parts.count >= 5, parts[0] == "model", parts[1] == "layers" else { return name }
    let layer = parts[2]
    let rest = parts.dropFirst(3).joined(separator: ".")
    let mapped: [String: String] = [
      "input_layernorm.weight": "attn_norm.weight",
      "self_attn.q_proj.weight": "attn_q.weight", "self_attn.q_proj.bias": "attn_q.bias",
      "self_attn.k_proj.weight": "attn_k.weight", "self_attn.k_proj.bias": "attn_k.bias",
      "self_attn.v_proj.weight": "attn_v.weight", "self_attn.v_proj.bias": "attn_v.bias",
      "self_attn.o_proj.weight": "attn_output.weight",
      "post_attention_layernorm.weight": "ffn_norm.weight",
      "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
      "mlp.down_proj.weight": "ffn_down.weight",
    ]
    return "blk.\(layer).\(mapped[rest] ?? rest)"
  }

  /// Heads whose rows llama.cpp permuted in tensor `name` (nil: not permuted).
  func permutedHeads(_ name: String) -> Int? {
    guard config.architecture == "llama" || config.architecture == "mistral" else { return nil }
    if name.hasSuffix("self_attn.q_proj.weight") { return config.heads }
    if name.hasSuffix("self_attn.k_proj.weight") { return config.kvHeads }
    return nil
  }

  func shape(of name: String) -> [Int]? { gguf.info(Self.ggufName(name))?.shape }

  func inPlace(_ name: String) throws -> Tensor? {
    guard permutedHeads(name) == nil, let info = gguf.info(Self.ggufName(name)), info.type == .f32 else {
      return nil
    }
    return try gguf.tensor(info.name)
  }

  func inPlaceBF16(_ name: String) -> BF16Tensor? {
    permutedHeads(name) == nil ? gguf.bf16Tensor(Self.ggufName(name)) : nil
  }

  func releasePages(_ name: String) { gguf.releasePages(Self.ggufName(name)) }

  func load(_ name: String, into destination: Tensor) throws {
    let ggufName = Self.ggufName(name)
    guard let heads = permutedHeads(name) else {
      try gguf.dequantize(ggufName, into: destination)
      return
    }
    let permuted = Tensor(zeros: destination.shape)
    try gguf.dequantize(ggufName, into: permuted)
    LlamaWeights.unpermuteRows(destination, from: permuted, heads: heads)
  }
}

/// A Hugging Face folder's safetensors, already in Hugging Face layout.
struct SafetensorsWeightSource: WeightSource {
  let collection: SafetensorsCollection
  var path: String { collection.folder }

  func shape(of name: String) -> [Int]? { collection.info(name)?.shape }

  func inPlace(_ name: String) throws -> Tensor? {
    guard collection.info(name)?.dtype == "F32" else { return nil }
    let tensor = try collection.tensor(name)
    return tensor
  }

  func load(_ name: String, into destination: Tensor) throws {
    destination.copy(from: try collection.tensor(name))
  }

  func inPlaceBF16(_ name: String) -> BF16Tensor? { collection.bf16Tensor(name) }

  func releasePages(_ name: String) { collection.releasePages(name) }
}
