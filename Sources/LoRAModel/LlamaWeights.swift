import LoRAFormats
import LoRAKernels

/// The frozen base weights of a Llama-family model, in Hugging Face layout.
///
/// Read-only and shared: one Float32 copy per process. Tensors the file holds as aligned
/// Float32 are used in place from the memory map; all others are converted once into a
/// single allocation (`converted`), which the per-tensor views below point into.
public final class LlamaWeights: @unchecked Sendable {
  /// One decoder layer's weights. Shapes: norms [D]; q [H·HS, D]; k, v [KVH·HS, D];
  /// o [D, H·HS]; gate, up [F, D]; down [D, F]; biases [H·HS] / [KVH·HS].
  public struct Layer: Sendable {
    public let attentionNorm: Tensor
    public let q: Tensor
    public let k: Tensor
    public let v: Tensor
    public let o: Tensor
    public let qBias: Tensor?
    public let kBias: Tensor?
    public let vBias: Tensor?
    public let mlpNorm: Tensor
    public let gate: Tensor
    public let up: Tensor
    public let down: Tensor

    /// The frozen linear `target` adapts: [OUT, IN].
    public func matrix(_ target: LoRATarget) -> Tensor {
      switch target {
      case .q: return q
      case .k: return k
      case .v: return v
      case .o: return o
      case .gate: return gate
      case .up: return up
      case .down: return down
      }
    }
  }

  /// [V, D]
  public let embedding: Tensor
  public let layers: [Layer]
  /// [D]
  public let finalNorm: Tensor
  /// [V, D]; the embedding itself when tied.
  public let output: Tensor
  /// Per-frequency divisors of RoPE (GGUF `rope_freqs.weight`, how llama.cpp stores
  /// Llama-3.1-style scaling): [HS/2], or nil.
  public let ropeFrequencyFactors: [Float]?
  /// The one allocation holding every converted tensor.
  let converted: Tensor
  /// Every tensor in the order of the model's layout, with its Hugging Face name (for
  /// fingerprints and exports).
  public let named: [(name: String, tensor: Tensor)]
  /// How many tensors are used in place from the file.
  public let inPlaceTensors: Int
  /// How many were converted (dequantized, widened or un-permuted) into `converted`.
  public let convertedTensors: Int

  /// Every tensor the model needs, with its Hugging Face name and expected shape, in order.
  static func layout(_ c: LlamaConfig, tied: Bool) -> [(name: String, shape: [Int])] {
    var entries: [(String, [Int])] = [("model.embed_tokens.weight", [c.vocabularySize, c.hiddenSize])]
    let qWidth = c.heads * c.headSize
    let kvWidth = c.kvHeads * c.headSize
    for l in 0..<c.layers {
      let p = "model.layers.\(l)."
      entries.append((p + "input_layernorm.weight", [c.hiddenSize]))
      entries.append((p + "self_attn.q_proj.weight", [qWidth, c.hiddenSize]))
      entries.append((p + "self_attn.k_proj.weight", [kvWidth, c.hiddenSize]))
      entries.append((p + "self_attn.v_proj.weight", [kvWidth, c.hiddenSize]))
      if c.attentionBias {
        entries.append((p + "self_attn.q_proj.bias", [qWidth]))
        entries.append((p + "self_attn.k_proj.bias", [kvWidth]))
        entries.append((p + "self_attn.v_proj.bias", [kvWidth]))
      }
      entries.append((p + "self_attn.o_proj.weight", [c.hiddenSize, qWidth]))
      entries.append((p + "post_attention_layernorm.weight", [c.hiddenSize]))
      entries.append((p + "mlp.gate_proj.weight", [c.intermediateSize, c.hiddenSize]))
      entries.append((p + "mlp.up_proj.weight", [c.intermediateSize, c.hiddenSize]))
      entries.append((p + "mlp.down_proj.weight", [c.hiddenSize, c.intermediateSize]))
    }
    entries.append(("model.norm.weight", [c.hiddenSize]))
    if !tied { entries.append(("lm_head.weight", [c.vocabularySize, c.hiddenSize])) }
    return entries
  }

  init(config: LlamaConfig, source: some WeightSource, storage: WeightStorage? = nil) throws {
    let tied = config.tiedEmbeddings || source.shape(of: "lm_head.weight") == nil
    let layout = LlamaWeights.layout(config, tied: tied)
    for (name, expected) in layout {
      guard let shape = source.shape(of: name) else {
        throw ModelError.weightMismatch(
          file: source.path,
          message: "has no tensor '\(name)' (expected shape \(expected) from the configuration)")
      }
      guard shape == expected else {
        throw ModelError.weightMismatch(
          file: source.path,
          message: "tensor '\(name)' has shape \(shape), the configuration expects \(expected)")
      }
    }
    var tensors: [String: Tensor] = [:]
    var pending: [(String, [Int])] = []
    for (name, shape) in layout {
      if let mapped = try source.inPlace(name) {
        tensors[name] = mapped
      } else {
        pending.append((name, shape))
      }
    }
    let total = pending.reduce(0) { $0 + Tensor.elementCount($1.1) }
    let fill: Bool
    if let storage {
      (converted, fill) = try storage.allocate(total)
      precondition(converted.count == total, "weight storage of \(converted.count) floats for \(total)")
    } else {
      (converted, fill) = (Tensor(zeros: [total]), true)
    }
    var offset = 0
    for (name, shape) in pending {
      let view = converted.view(offset: offset, shape: shape)
      if fill { try source.load(name, into: view) }
      tensors[name] = view
      offset += view.count
    }
    try storage?.ready()
    inPlaceTensors = layout.count - pending.count
    if source.shape(of: "rope_freqs.weight") == [config.headSize / 2] {
      let factors = Tensor(zeros: [config.headSize / 2])
      try source.load("rope_freqs.weight", into: factors)
      ropeFrequencyFactors = factors.values
    } else {
      ropeFrequencyFactors = nil
    }
    convertedTensors = pending.count

    named = layout.map { ($0.name, tensors[$0.name]!) }
    func t(_ name: String) -> Tensor { tensors[name]! }
    embedding = t("model.embed_tokens.weight")
    finalNorm = t("model.norm.weight")
    output = tied ? embedding : t("lm_head.weight")
    layers = (0..<config.layers).map { l in
      let p = "model.layers.\(l)."
      return Layer(
        attentionNorm: t(p + "input_layernorm.weight"), q: t(p + "self_attn.q_proj.weight"),
        k: t(p + "self_attn.k_proj.weight"), v: t(p + "self_attn.v_proj.weight"),
        o: t(p + "self_attn.o_proj.weight"), qBias: tensors[p + "self_attn.q_proj.bias"],
        kBias: tensors[p + "self_attn.k_proj.bias"], vBias: tensors[p + "self_attn.v_proj.bias"],
        mlpNorm: t(p + "post_attention_layernorm.weight"), gate: t(p + "mlp.gate_proj.weight"),
        up: t(p + "mlp.up_proj.weight"), down: t(p + "mlp.down_proj.weight"))
    }
  }

  /// The same weights with private, writable copies of the matrices `targets` name in every
  /// layer (for merging adapters into them while `base` stays as it is); every other tensor
  /// is shared with `base`.
  public init(copying base: LlamaWeights, writable targets: Set<LoRATarget>) {
    func copy(_ t: Tensor, _ target: LoRATarget) -> Tensor {
      guard targets.contains(target) else { return t }
      let c = Tensor(zeros: t.shape)
      c.copy(from: t)
      return c
    }
    embedding = base.embedding
    finalNorm = base.finalNorm
    output = base.output
    ropeFrequencyFactors = base.ropeFrequencyFactors
    converted = base.converted
    inPlaceTensors = base.inPlaceTensors
    convertedTensors = base.convertedTensors
    layers = base.layers.map { w in
      Layer(
        attentionNorm: w.attentionNorm, q: copy(w.q, .q), k: copy(w.k, .k), v: copy(w.v, .v),
        o: copy(w.o, .o),
        qBias: w.qBias, kBias: w.kBias, vBias: w.vBias, mlpNorm: w.mlpNorm, gate: copy(w.gate, .gate),
        up: copy(w.up, .up), down: copy(w.down, .down))
    }
    var byIdentity: [ObjectIdentifier: Tensor] = [:]
    for (old, new) in zip(base.layers, layers) {
      for (a, b) in [
        (old.q, new.q), (old.k, new.k), (old.v, new.v), (old.o, new.o), (old.gate, new.gate),
        (old.up, new.up), (old.down, new.down),
      ] {
        byIdentity[ObjectIdentifier(a)] = b
      }
    }
    named = base.named.map { ($0.name, byIdentity[ObjectIdentifier($0.tensor)] ?? $0.tensor) }
  }

  /// Undoes llama.cpp's q/k row permutation: within each head of HS rows, file row 2i + j
  /// holds Hugging Face row j·HS/2 + i (j ∈ {0, 1}).
  /// - destination, source: [heads·HS, IN].
  public static func unpermuteRows(_ destination: Tensor, from source: Tensor, heads: Int) {
    let rows = destination.shape[0]
    let width = destination.count / rows
    let headSize = rows / heads
    let half = headSize / 2
    for h in 0..<heads {
      for j in 0..<2 {
        for i in 0..<half {
          let to = h * headSize + j * half + i
          let from = h * headSize + 2 * i + j
          destination.view(offset: to * width, shape: [width]).copy(
            from: source.view(offset: from * width, shape: [width]))
        }
      }
    }
  }

  /// Applies llama.cpp's q/k row permutation (what `convert_hf_to_gguf.py` does to Llama and
  /// Mistral q_proj/k_proj rows, the inverse of `unpermuteRows`): within each head of HS
  /// rows, Hugging Face row j·HS/2 + i goes to row 2i + j (j ∈ {0, 1}).
  /// - destination, source: [heads·HS, IN].
  public static func permuteRows(_ destination: Tensor, from source: Tensor, heads: Int) {
    let rows = destination.shape[0]
    let width = destination.count / rows
    let headSize = rows / heads
    let half = headSize / 2
    for h in 0..<heads {
      for j in 0..<2 {
        for i in 0..<half {
          let to = h * headSize + 2 * i + j
          let from = h * headSize + j * half + i
          destination.view(offset: to * width, shape: [width]).copy(
            from: source.view(offset: from * width, shape: [width]))
        }
      }
    }
  }
}

/// Where the converted Float32 weights live. By default each process allocates its own;
/// ranks on one node can instead share one copy (an MPI shared-memory window): `allocate`
/// returns the buffer and whether this process fills it, and `ready` returns once the
/// filling process has finished (a barrier among the sharers).
public struct WeightStorage {
  public var allocate: (Int) throws -> (tensor: Tensor, fill: Bool)
  public var ready: () throws -> Void

  public init(
    allocate: @escaping (Int) throws -> (tensor: Tensor, fill: Bool), ready: @escaping () throws -> Void
  ) {
    self.allocate = allocate
    self.ready = ready
  }
}
