import LoRAKernels

/// Buffers of one forward pass over B sequences of T tokens (N = B·T rows).
///
/// With `keepForBackward` every layer keeps what its backward pass needs: its input (the
/// residual stream), the RMSNorm factors, q and k after RoPE, v, the attention output, the
/// stream after attention, the MLP's gate and up, and each LoRA module's x·Aᵀ. Everything
/// cheaper to recompute than to keep is shared scratch: normalised rows, the SwiGLU output,
/// attention probabilities (recomputed from q and k), dropout masks (regenerated from a
/// seed). Without `keepForBackward` one set serves every layer (inference).
public final class LlamaActivations: @unchecked Sendable {
  /// One layer's kept buffers. Shapes: attentionRMS, mlpRMS [N]; q, attentionOut [N, H·HS];
  /// k, v [N, KVH·HS]; afterAttention [N, D]; gate, up [N, F]; lora[target] [N, R].
  public final class Layer: @unchecked Sendable {
    public let attentionRMS: Tensor
    public let q: Tensor
    public let k: Tensor
    public let v: Tensor
    public let attentionOut: Tensor
    public let afterAttention: Tensor
    public let mlpRMS: Tensor
    public let gate: Tensor
    public let up: Tensor
    /// x·Aᵀ of each adapted linear of this layer.
    public let lora: [LoRATarget: Tensor]

    init(_ c: LlamaConfig, rows n: Int, lora: [LoRATarget: Tensor], allocate: ([Int]) -> Tensor) {
      attentionRMS = allocate([n])
      q = allocate([n, c.heads * c.headSize])
      k = allocate([n, c.kvHeads * c.headSize])
      v = allocate([n, c.kvHeads * c.headSize])
      attentionOut = allocate([n, c.heads * c.headSize])
      afterAttention = allocate([n, c.hiddenSize])
      mlpRMS = allocate([n])
      gate = allocate([n, c.intermediateSize])
      up = allocate([n, c.intermediateSize])
      self.lora = lora
    }
  }

  public let batch: Int
  public let length: Int
  public let keepForBackward: Bool
  /// Activation checkpointing: only each layer's input is kept; the backward pass reruns a
  /// layer's forward into one shared set of buffers just before its backward (one more
  /// forward pass of compute for a fraction of the memory).
  public let checkpointed: Bool
  /// The adapter whose low-rank products these buffers hold, if any.
  public let adapter: LoRAAdapter?
  let layerBuffers: [Layer]
  /// Residual stream: layer l reads `hidden(l)` and writes `hidden(l + 1)`. [N, D] each.
  let hiddenStates: [Tensor]
  /// Shared scratch: normalised rows [N, D], SwiGLU output [N, F], attention probabilities,
  /// dropped-out LoRA inputs [N, max IN].
  let normed: Tensor
  let activation: Tensor
  let attentionScratch: Tensor
  let dropped: Tensor
  /// Final RMSNorm output [N, D] and factors [N].
  public let finalNormed: Tensor
  public let finalRMS: Tensor
  /// Seed of this pass's LoRA dropout masks (set by the trainer before each forward).
  public var dropoutSeed: UInt64 = 0

  /// - keys: keys visible to attention per sequence; T without a KV cache, the cache capacity
  ///   with one.
  /// - arena: where the buffers come from (shared with other sets never used at the same
  ///   time); nil allocates them.
  public init(
    config c: LlamaConfig, batch: Int, length: Int, keepForBackward: Bool, keys: Int? = nil,
    adapter: LoRAAdapter? = nil, arena: TensorArena? = nil, checkpointed: Bool = false
  ) {
    self.checkpointed = keepForBackward && checkpointed
    let perLayer = keepForBackward && !checkpointed
    let allocate: ([Int]) -> Tensor = { shape in arena?.tensor(shape) ?? Tensor(zeros: shape) }
    self.batch = batch
    self.length = length
    self.keepForBackward = keepForBackward
    self.adapter = adapter
    let n = batch * length
    layerBuffers = (0..<(perLayer ? c.layers : 1)).map { l in
      var lora: [LoRATarget: Tensor] = [:]
      for target in LoRATarget.allCases {
        // Without keepForBackward one buffer serves every layer: size it for the largest rank.
        let ranks = (perLayer ? [l] : Array(0..<c.layers)).compactMap {
          adapter?.module(layer: $0, target: target)?.rank
        }
        if let rank = ranks.max() { lora[target] = allocate([n, rank]) }
      }
      return Layer(c, rows: n, lora: lora, allocate: allocate)
    }
    hiddenStates = (0..<(keepForBackward ? c.layers + 1 : 2)).map { _ in allocate([n, c.hiddenSize]) }
    normed = allocate([n, c.hiddenSize])
    activation = allocate([n, c.intermediateSize])
    attentionScratch = allocate([Attention.scratchCount(queryLength: length, keyLength: keys ?? length)])
    let widest = max(c.hiddenSize, c.intermediateSize, c.heads * c.headSize)
    dropped = allocate([(adapter?.config.loraDropout ?? 0) > 0 ? n * widest : 0])
    finalNormed = allocate([n, c.hiddenSize])
    finalRMS = allocate([n])
  }

  public func layer(_ l: Int) -> Layer { layerBuffers[layerBuffers.count > 1 ? l : 0] }
  public func hidden(_ l: Int) -> Tensor { hiddenStates[keepForBackward ? l : l % 2] }
}

/// Keys and values of past positions, per layer: [B, capacity, KVH·HS] each, RoPE applied.
public final class KVCache: @unchecked Sendable {
  public let batch: Int
  public let capacity: Int
  /// Positions filled so far (the same for every sequence of the batch).
  public internal(set) var length = 0
  let keys: [Tensor]
  let values: [Tensor]

  public init(config c: LlamaConfig, batch: Int, capacity: Int) {
    self.batch = batch
    self.capacity = capacity
    keys = (0..<c.layers).map { _ in Tensor(zeros: [batch, capacity, c.kvHeads * c.headSize]) }
    values = (0..<c.layers).map { _ in Tensor(zeros: [batch, capacity, c.kvHeads * c.headSize]) }
  }

  /// Forgets every position (the buffers are reused).
  public func reset() { length = 0 }
}
