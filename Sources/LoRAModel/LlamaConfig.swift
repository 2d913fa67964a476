import Foundation
import LoRAFormats

/// RoPE frequency scaling (Hugging Face `rope_scaling`).
public struct RoPEScaling: Codable, Equatable, Sendable {
  /// "linear" or "llama3".
  public var type: String
  public var factor: Double
  public var lowFrequencyFactor: Double?
  public var highFrequencyFactor: Double?
  public var originalContextLength: Int?

  enum CodingKeys: String, CodingKey {
    case type = "rope_type"
    case legacyType = "type"
    case factor
    case lowFrequencyFactor = "low_freq_factor"
    case highFrequencyFactor = "high_freq_factor"
    case originalContextLength = "original_max_position_embeddings"
  }

  public init(
    type: String, factor: Double, lowFrequencyFactor: Double? = nil, highFrequencyFactor: Double? = nil,
    originalContextLength: Int? = nil
  ) {
    self.type = type
    self.factor = factor
    self.lowFrequencyFactor = lowFrequencyFactor
    self.highFrequencyFactor = highFrequencyFactor
    self.originalContextLength = originalContextLength
  }

  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    type =
      try c.decodeIfPresent(String.self, forKey: .type) ?? c.decodeIfPresent(String.self, forKey: .legacyType)
      ?? "linear"
    factor = try c.decodeIfPresent(Double.self, forKey: .factor) ?? 1
    lowFrequencyFactor = try c.decodeIfPresent(Double.self, forKey: .lowFrequencyFactor)
    highFrequencyFactor = try c.decodeIfPresent(Double.self, forKey: .highFrequencyFactor)
    originalContextLength = try c.decodeIfPresent(Int.self, forKey: .originalContextLength)
  }

  public func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(type, forKey: .type)
    try c.encode(factor, forKey: .factor)
    try c.encodeIfPresent(lowFrequencyFactor, forKey: .lowFrequencyFactor)
    try c.encodeIfPresent(highFrequencyFactor, forKey: .highFrequencyFactor)
    try c.encodeIfPresent(originalContextLength, forKey: .originalContextLength)
  }
}

/// The shape of a Llama-family decoder, with Hugging Face `config.json` key names.
///
/// Defaults follow Hugging Face's `LlamaConfig` where a key may be absent (`rms_norm_eps`
/// 1e-6, `rope_theta` 10000, untied output, no attention bias; Qwen2 always has q/k/v biases).
public struct LlamaConfig: Codable, Equatable, Sendable {
  public static let supportedArchitectures = ["llama", "mistral", "qwen2"]

  /// "llama", "mistral" or "qwen2" (`model_type`).
  public var architecture: String
  /// D
  public var hiddenSize: Int
  /// F
  public var intermediateSize: Int
  /// L
  public var layers: Int
  /// H
  public var heads: Int
  /// KVH
  public var kvHeads: Int
  /// HS
  public var headSize: Int
  /// V
  public var vocabularySize: Int
  public var rmsNormEps: Double
  public var ropeTheta: Double
  public var ropeScaling: RoPEScaling?
  public var contextLength: Int
  public var tiedEmbeddings: Bool
  /// q, k and v projections carry biases (Qwen2).
  public var attentionBias: Bool
  /// Sliding-window attention (Mistral v0.1): each position attends to itself and the W − 1
  /// before it; nil attends to every earlier position.
  public var slidingWindow: Int?

  enum CodingKeys: String, CodingKey {
    case architecture = "model_type"
    case hiddenSize = "hidden_size"
    case intermediateSize = "intermediate_size"
    case layers = "num_hidden_layers"
    case heads = "num_attention_heads"
    case kvHeads = "num_key_value_heads"
    case headSize = "head_dim"
    case vocabularySize = "vocab_size"
    case rmsNormEps = "rms_norm_eps"
    case ropeTheta = "rope_theta"
    case ropeScaling = "rope_scaling"
    case ropeParameters = "rope_parameters"
    case contextLength = "max_position_embeddings"
    case tiedEmbeddings = "tie_word_embeddings"
    case attentionBias = "attention_bias"
    case slidingWindow = "sliding_window"
    case useSlidingWindow = "use_sliding_window"
  }

  public init(
    architecture: String, hiddenSize: Int, intermediateSize: Int, layers: Int, heads: Int, kvHeads: Int,
    headSize: Int? = nil, vocabularySize: Int, rmsNormEps: Double = 1e-5, ropeTheta: Double = 10000,
    ropeScaling: RoPEScaling? = nil, contextLength: Int = 2048, tiedEmbeddings: Bool = false,
    attentionBias: Bool = false, slidingWindow: Int? = nil
  ) {
    self.architecture = architecture
    self.hiddenSize = hiddenSize
    self.intermediateSize = intermediateSize
    self.layers = layers
    self.heads = heads
    self.kvHeads = kvHeads
    self.headSize = headSize ?? hiddenSize / max(heads, 1)
    self.vocabularySize = vocabularySize
    self.rmsNormEps = rmsNormEps
    self.ropeTheta = ropeTheta
    self.ropeScaling = ropeScaling
    self.contextLength = contextLength
    self.tiedEmbeddings = tiedEmbeddings
    self.attentionBias = attentionBias
    self.slidingWindow = slidingWindow
  }

  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    architecture = try c.decodeIfPresent(String.self, forKey: .architecture) ?? "llama"
    hiddenSize = try c.decode(Int.self, forKey: .hiddenSize)
    intermediateSize = try c.decode(Int.self, forKey: .intermediateSize)
    layers = try c.decode(Int.self, forKey: .layers)
    heads = try c.decode(Int.self, forKey: .heads)
    kvHeads = try c.decodeIfPresent(Int.self, forKey: .kvHeads) ?? heads
    headSize = try c.decodeIfPresent(Int.self, forKey: .headSize) ?? hiddenSize / max(heads, 1)
    vocabularySize = try c.decode(Int.self, forKey: .vocabularySize)
    rmsNormEps = try c.decodeIfPresent(Double.self, forKey: .rmsNormEps) ?? 1e-6
    // transformers 5 nests theta and scaling in `rope_parameters`; 4.x has `rope_theta` and
    // `rope_scaling` at the top level.
    let parameters = try? c.nestedContainer(keyedBy: RoPEParameterKeys.self, forKey: .ropeParameters)
    ropeTheta =
      try c.decodeIfPresent(Double.self, forKey: .ropeTheta)
      ?? parameters?.decodeIfPresent(Double.self, forKey: .ropeTheta) ?? 10000
    ropeScaling = try? c.decodeIfPresent(RoPEScaling.self, forKey: .ropeScaling)
    if ropeScaling == nil, let type = try parameters?.decodeIfPresent(String.self, forKey: .ropeType),
      type != "default"
    {
      ropeScaling = try c.decode(RoPEScaling.self, forKey: .ropeParameters)
    }
    contextLength = try c.decodeIfPresent(Int.self, forKey: .contextLength) ?? 2048
    tiedEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tiedEmbeddings) ?? false
    attentionBias = try c.decodeIfPresent(Bool.self, forKey: .attentionBias) ?? (architecture == "qwen2")
    // Mistral sets `sliding_window` (null for v0.2 and later); Qwen2 writes one but applies it
    // only with `use_sliding_window: true` (and then only above `max_window_layers`).
    let window = try c.decodeIfPresent(Int.self, forKey: .slidingWindow)
    let used = try c.decodeIfPresent(Bool.self, forKey: .useSlidingWindow) ?? (architecture != "qwen2")
    slidingWindow = used ? window : nil
  }

  private enum RoPEParameterKeys: String, CodingKey {
    case ropeTheta = "rope_theta"
    case ropeType = "rope_type"
  }

  public func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(architecture, forKey: .architecture)
    try c.encode(hiddenSize, forKey: .hiddenSize)
    try c.encode(intermediateSize, forKey: .intermediateSize)
    try c.encode(layers, forKey: .layers)
    try c.encode(heads, forKey: .heads)
    try c.encode(kvHeads, forKey: .kvHeads)
    try c.encode(headSize, forKey: .headSize)
    try c.encode(vocabularySize, forKey: .vocabularySize)
    try c.encode(rmsNormEps, forKey: .rmsNormEps)
    try c.encode(ropeTheta, forKey: .ropeTheta)
    try c.encodeIfPresent(ropeScaling, forKey: .ropeScaling)
    try c.encode(contextLength, forKey: .contextLength)
    try c.encode(tiedEmbeddings, forKey: .tiedEmbeddings)
    try c.encode(attentionBias, forKey: .attentionBias)
    try c.encodeIfPresent(slidingWindow, forKey: .slidingWindow)
  }

  /// Reads and validates a Hugging Face `config.json`.
  public init(configJSON url: URL) throws {
    let data: Data
    do { data = try Data(contentsOf: url) } catch {
      throw ModelError.invalidConfig(file: url.path, message: "cannot read: \(error.localizedDescription)")
    }
    let architecture =
      ((try? JSONSerialization.jsonObject(with: data)) as? [String: Any])?["model_type"] as? String ?? "llama"
    guard LlamaConfig.supportedArchitectures.contains(architecture) else {
      throw ModelError.unsupportedArchitecture(file: url.path, architecture: architecture)
    }
    do {
      self = try JSONDecoder().decode(LlamaConfig.self, from: data)
    } catch DecodingError.keyNotFound(let key, _) {
      throw ModelError.invalidConfig(file: url.path, message: "missing required key '\(key.stringValue)'")
    } catch DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context) {
      let key = context.codingPath.map(\.stringValue).joined(separator: ".")
      throw ModelError.invalidConfig(file: url.path, message: "key '\(key)': \(context.debugDescription)")
    } catch {
      throw ModelError.invalidConfig(file: url.path, message: "not a valid config.json: \(error)")
    }
    if architecture == "qwen2", slidingWindow != nil {
      throw ModelError.invalidConfig(
        file: url.path,
        message:
          "use_sliding_window is true: Qwen2's sliding window on the layers above max_window_layers is not supported (supported: Mistral's on every layer)"
      )
    }
    try validate(file: url.path)
  }

  /// Reads the `{arch}.*` metadata of a GGUF file.
  public init(gguf: GGUFFile) throws {
    let file = gguf.path
    guard let architecture = gguf.metadata["general.architecture"]?.string else {
      throw ModelError.invalidConfig(file: file, message: "metadata 'general.architecture' is missing")
    }
    guard LlamaConfig.supportedArchitectures.contains(architecture) else {
      throw ModelError.unsupportedArchitecture(file: file, architecture: architecture)
    }
    func int(_ key: String) throws -> Int {
      guard let value = gguf.metadata["\(architecture).\(key)"]?.int else {
        throw ModelError.invalidConfig(
          file: file, message: "metadata '\(architecture).\(key)' is missing or not an integer")
      }
      return value
    }
    func double(_ key: String) -> Double? { gguf.metadata["\(architecture).\(key)"]?.double }
    let hidden = try int("embedding_length")
    let heads = try int("attention.head_count")
    let vocabulary =
      gguf.metadata["\(architecture).vocab_size"]?.int ?? gguf.metadata["tokenizer.ggml.tokens"]?.array?.count
      ?? gguf.info("token_embd.weight")?.shape.first ?? 0
    var scaling: RoPEScaling?
    if let type = gguf.metadata["\(architecture).rope.scaling.type"]?.string, type != "none",
      let factor = double("rope.scaling.factor")
    {
      scaling = RoPEScaling(
        type: type, factor: factor,
        originalContextLength: gguf.metadata["\(architecture).rope.scaling.original_context_length"]?.int)
    }
    self.init(
      architecture: architecture, hiddenSize: hidden, intermediateSize: try int("feed_forward_length"),
      layers: try int("block_count"), heads: heads,
      kvHeads: gguf.metadata["\(architecture).attention.head_count_kv"]?.int ?? heads,
      headSize: gguf.metadata["\(architecture).attention.key_length"]?.int ?? hidden / max(heads, 1),
      vocabularySize: vocabulary,
      rmsNormEps: double("attention.layer_norm_rms_epsilon") ?? 1e-5,
      ropeTheta: double("rope.freq_base") ?? 10000, ropeScaling: scaling,
      contextLength: gguf.metadata["\(architecture).context_length"]?.int ?? 2048,
      tiedEmbeddings: gguf.info("output.weight") == nil,
      attentionBias: gguf.info("blk.0.attn_q.bias") != nil,
      slidingWindow: gguf.metadata["\(architecture).attention.sliding_window"]?.int)
    try validate(file: file)
  }

  /// Checks sizes are positive and consistent.
  public func validate(file: String) throws {
    let positive: [(String, Int)] = [
      ("hidden_size", hiddenSize), ("intermediate_size", intermediateSize), ("num_hidden_layers", layers),
      ("num_attention_heads", heads), ("num_key_value_heads", kvHeads), ("head_dim", headSize),
      ("vocab_size", vocabularySize), ("max_position_embeddings", contextLength),
    ]
    for (key, value) in positive where value <= 0 {
      throw ModelError.invalidConfig(file: file, message: "\(key) is \(value), expected a positive number")
    }
    guard heads % kvHeads == 0 else {
      throw ModelError.invalidConfig(
        file: file,
        message: "num_attention_heads \(heads) is not a multiple of num_key_value_heads \(kvHeads)")
    }
    guard headSize % 2 == 0 else {
      throw ModelError.invalidConfig(file: file, message: "head_dim \(headSize) must be even for RoPE")
    }
    if let slidingWindow, slidingWindow <= 0 {
      throw ModelError.invalidConfig(
        file: file, message: "sliding_window is \(slidingWindow), expected a positive number")
    }
    guard rmsNormEps > 0, ropeTheta > 0 else {
      throw ModelError.invalidConfig(file: file, message: "rms_norm_eps and rope_theta must be positive")
    }
  }

  /// Parameters of the base model (embedding counted once when tied).
  public var parameterCount: Int {
    let attention = hiddenSize * heads * headSize * 2 + hiddenSize * kvHeads * headSize * 2
    let bias = attentionBias ? (heads + 2 * kvHeads) * headSize : 0
    let mlp = 3 * hiddenSize * intermediateSize
    let perLayer = attention + bias + mlp + 2 * hiddenSize
    let embedding = vocabularySize * hiddenSize
    return layers * perLayer + embedding * (tiedEmbeddings ? 1 : 2) + hiddenSize
  }
}
