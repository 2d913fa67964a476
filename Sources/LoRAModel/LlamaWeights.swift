import LoRAFormats
import LoRAKernels

/// The frozen base weights of a Llama-family model, in Hugging Face layout.
///
/// Read-only and shared: one copy per process (or per node). The matrices (embedding, the
/// seven projections of each layer, the output head) are held in the `precision` chosen at
/// load; norms and biases always in Float32. Tensors the file already holds in the wanted
/// precision (aligned Float32 for an fp32 base; BF16 matrices, not permuted, for a bf16 one)
/// are used in place from the memory map; all others are converted once into a single
/// allocation (`converted`), which the per-tensor views below point into (a bf16 matrix packs
/// two elements per Float32 slot), and their file pages are released once converted.
public final class LlamaWeights: @unchecked Sendable {
  /// One decoder layer's weights. Shapes: norms [D]; q [H·HS, D]; k, v [KVH·HS, D];
  /// o [D, H·HS]; gate, up [F, D]; down [D, F]; biases [H·HS] / [KVH·HS].
  public struct Layer: Sendable {
    public let attentionNorm: Tensor
    public let q: FrozenMatrix
    public let k: FrozenMatrix
    public let v: FrozenMatrix
    public let o: FrozenMatrix
    public let qBias: Tensor?
    public let kBias: Tensor?
    public let vBias: Tensor?
    public let mlpNorm: Tensor
    public let gate: FrozenMatrix
    public let up: FrozenMatrix
    public let down: FrozenMatrix

    /// The frozen linear `target` adapts: [OUT, IN].
    public func matrix(_ target: LoRATarget) -> FrozenMatrix {
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
  public let embedding: FrozenMatrix
  public let layers: [Layer]
  /// [D]
  public let finalNorm: Tensor
  /// [V, D]; the embedding itself when tied.
  public let output: FrozenMatrix
  /// Per-frequency divisors of RoPE (GGUF `rope_freqs.weight`, how llama.cpp stores
  /// Llama-3.1-style scaling): [HS/2], or nil.
  public let ropeFrequencyFactors: [Float]?
  /// The precision of the matrices.
  public let precision: StoredPrecision
  /// The one allocation holding every converted tensor.
  let converted: Tensor
  /// Where the weights were read from (for fp32 values of bf16-held tensors).
  let source: any WeightSource
  /// Every tensor in the order of the model's layout, with its Hugging Face name (for
  /// fingerprints and exports).
  public let named: [(name: String, tensor: FrozenMatrix)]
  /// How many tensors are used in place from the file.
  public let inPlaceTensors: Int
  /// How many were converted (dequantized, widened, rounded or un-permuted) into `converted`.
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

  /// Bytes the weights of a model of configuration `c` take when held in `precision`
  /// (matrices in it, norms and biases in fp32): what loading it costs, one copy per node.
  public static func heldBytes(_ c: LlamaConfig, tied: Bool, precision: StoredPrecision) -> Int {
    layout(c, tied: tied).reduce(0) { total, entry in
      let count = Tensor.elementCount(entry.shape)
      return total + count * (isMatrix(entry.shape) && precision == .bf16 ? 2 : 4)
    }
  }

  /// Whether tensor `name` of the layout is a matrix (held in the base precision) rather
  /// than a norm or bias vector (always fp32).
  static func isMatrix(_ shape: [Int]) -> Bool { shape.count == 2 }

  init(
    config: LlamaConfig, source: some WeightSource, storage: WeightStorage? = nil,
    precision: StoredPrecision = .f32
  ) throws {
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
    // Where each tensor goes: in place (fp32 in an fp32 base, bf16 matrices in a bf16 one),
    // a bf16 slot range, or an fp32 range.
    var inPlace: [String: FrozenMatrix] = [:]
    var placement: [(name: String, shape: [Int], offset: Int, bf16: Bool)] = []
    var total = 0
    for (name, shape) in layout where precision == .bf16 && Self.isMatrix(shape) {
      if let mapped = source.inPlaceBF16(name) {
        inPlace[name] = .bf16(mapped)
        continue
      }
      placement.append((name, shape, total, true))
      // 64-byte aligned starts for oneDNN and the vector loops.
      total += (BF16Tensor.floatSlots(Tensor.elementCount(shape)) + 15) / 16 * 16
    }
    for (name, shape) in layout where precision == .f32 || !Self.isMatrix(shape) {
      if let mapped = try source.inPlace(name) {
        inPlace[name] = .f32(mapped)
      } else {
        placement.append((name, shape, total, false))
        total += Tensor.elementCount(shape)
      }
    }
    let fill: Bool
    if let storage {
      (converted, fill) = try storage.allocate(total)
      precondition(converted.count == total, "weight storage of \(converted.count) floats for \(total)")
    } else {
      (converted, fill) = (Tensor(zeros: [total]), true)
    }
    var tensors = inPlace
    let largest = placement.filter(\.bf16).map { Tensor.elementCount($0.shape) }.max() ?? 0
    let staging = Tensor(zeros: [fill ? largest : 0])
    for (name, shape, offset, bf16) in placement {
      guard bf16 else {
        let view = converted.view(offset: offset, shape: shape)
        if fill {
          try source.load(name, into: view)
          source.releasePages(name)
        }
        tensors[name] = .f32(view)
        continue
      }
      let matrix = BF16Tensor(carving: converted, offset: offset, shape: shape)
      if fill {
        let values: Tensor
        if let mapped = try source.inPlace(name) {
          values = mapped
        } else {
          values = staging.view(offset: 0, shape: shape)
          try source.load(name, into: values)
        }
        do {
          try matrix.store(values, name: name)
        } catch {
          throw ModelError.weightMismatch(file: source.path, message: "\(error)")
        }
        source.releasePages(name)
      }
      tensors[name] = .bf16(matrix)
    }
    try storage?.ready()
    self.precision = precision
    self.source = source
    inPlaceTensors = inPlace.count
    convertedTensors = placement.count
    if source.shape(of: "rope_freqs.weight") == [config.headSize / 2] {
      let factors = Tensor(zeros: [config.headSize / 2])
      try source.load("rope_freqs.weight", into: factors)
      ropeFrequencyFactors = factors.values
    } else {
      ropeFrequencyFactors = nil
    }

    named = layout.map { ($0.name, tensors[$0.name]!) }
    func m(_ name: String) -> FrozenMatrix { tensors[name]! }
    func t(_ name: String) -> Tensor { tensors[name]!.f32! }
    embedding = m("model.embed_tokens.weight")
    finalNorm = t("model.norm.weight")
    output = tied ? embedding : m("lm_head.weight")
    layers = (0..<config.layers).map { l in
      let p = "model.layers.\(l)."
      return Layer(
        attentionNorm: t(p + "input_layernorm.weight"), q: m(p + "self_attn.q_proj.weight"),
        k: m(p + "self_attn.k_proj.weight"), v: m(p + "self_attn.v_proj.weight"),
        o: m(p + "self_attn.o_proj.weight"), qBias: tensors[p + "self_attn.q_proj.bias"]?.f32,
        kBias: tensors[p + "self_attn.k_proj.bias"]?.f32, vBias: tensors[p + "self_attn.v_proj.bias"]?.f32,
        mlpNorm: t(p + "post_attention_layernorm.weight"), gate: m(p + "mlp.gate_proj.weight"),
        up: m(p + "mlp.up_proj.weight"), down: m(p + "mlp.down_proj.weight"))
    }
  }

  /// The same weights with private, writable fp32 copies of the matrices `targets` name in
  /// every layer (for merging adapters into them while `base` stays as it is; bf16 matrices
  /// are widened); every other tensor is shared with `base`.
  public init(copying base: LlamaWeights, writable targets: Set<LoRATarget>) {
    var copies: [String: FrozenMatrix] = [:]
    layers = base.layers.enumerated().map { l, w in
      func copy(_ target: LoRATarget) -> FrozenMatrix {
        let matrix = w.matrix(target)
        guard targets.contains(target) else { return matrix }
        let c = Tensor(zeros: matrix.shape)
        matrix.copyRows(0..<matrix.shape[0], into: c)
        copies[target.moduleName(layer: l) + ".weight"] = .f32(c)
        return .f32(c)
      }
      return Layer(
        attentionNorm: w.attentionNorm, q: copy(.q), k: copy(.k), v: copy(.v), o: copy(.o),
        qBias: w.qBias, kBias: w.kBias, vBias: w.vBias, mlpNorm: w.mlpNorm, gate: copy(.gate),
        up: copy(.up), down: copy(.down))
    }
    embedding = base.embedding
    finalNorm = base.finalNorm
    output = base.output
    ropeFrequencyFactors = base.ropeFrequencyFactors
    precision = base.precision
    converted = base.converted
    source = base.source
    inPlaceTensors = base.inPlaceTensors
    convertedTensors = base.convertedTensors
    named = base.named.map { ($0.name, copies[$0.name] ?? $0.tensor) }
  }

  /// Tensor `name` of the layout in fp32 as the file defines it: the held tensor when it is
  /// fp32, else read again from the file (a bf16-held matrix keeps only rounded values).
  public func fp32(_ name: String) throws -> Tensor {
    guard let held = named.first(where: { $0.name == name })?.tensor else {
      throw ModelError.weightMismatch(
        file: source.path, message: "has no tensor '\(name)' in the model's layout")
    }
    if let tensor = held.f32 { return tensor }
    if let mapped = try source.inPlace(name) { return mapped }
    let tensor = Tensor(zeros: held.shape)
    try source.load(name, into: tensor)
    return tensor
  }

  /// Bytes the held tensors take (in place ones included).
  public var heldBytes: Int { named.reduce(0) { $0 + $1.tensor.bytes } }
}
