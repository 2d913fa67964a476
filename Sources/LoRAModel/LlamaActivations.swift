import LoRAKernels

/// Buffers of one forward pass over B sequences of T tokens (N = B·T rows).
///
/// With `keepForBackward` every layer has its own buffers, so the backward pass finds each
/// layer's inputs, normalisation factors, attention probabilities and MLP pre-activations;
/// without it one set is reused by all layers (inference).
public final class LlamaActivations: @unchecked Sendable {
  /// One layer's buffers. Shapes: input, attentionNormed, afterAttention, mlpNormed [N, D];
  /// attentionRMS, mlpRMS [N]; q, attentionOut [N, H·HS]; k, v [N, KVH·HS];
  /// probabilities [B, H, T, S] with S the keys visible (T, or the KV cache capacity);
  /// gate, up, activation [N, F].
  public final class Layer: @unchecked Sendable {
    public let attentionRMS: Tensor
    public let attentionNormed: Tensor
    public let q: Tensor
    public let k: Tensor
    public let v: Tensor
    public let probabilities: Tensor
    public let attentionOut: Tensor
    public let afterAttention: Tensor
    public let mlpRMS: Tensor
    public let mlpNormed: Tensor
    public let gate: Tensor
    public let up: Tensor
    public let activation: Tensor

    init(_ c: LlamaConfig, batch: Int, length: Int, keys: Int) {
      let n = batch * length
      attentionRMS = Tensor(zeros: [n])
      attentionNormed = Tensor(zeros: [n, c.hiddenSize])
      q = Tensor(zeros: [n, c.heads * c.headSize])
      k = Tensor(zeros: [n, c.kvHeads * c.headSize])
      v = Tensor(zeros: [n, c.kvHeads * c.headSize])
      probabilities = Tensor(zeros: [batch, c.heads, length, keys])
      attentionOut = Tensor(zeros: [n, c.heads * c.headSize])
      afterAttention = Tensor(zeros: [n, c.hiddenSize])
      mlpRMS = Tensor(zeros: [n])
      mlpNormed = Tensor(zeros: [n, c.hiddenSize])
      gate = Tensor(zeros: [n, c.intermediateSize])
      up = Tensor(zeros: [n, c.intermediateSize])
      activation = Tensor(zeros: [n, c.intermediateSize])
    }
  }

  public let batch: Int
  public let length: Int
  public let keepForBackward: Bool
  let layerBuffers: [Layer]
  /// Residual stream: layer l reads `hidden(l)` and writes `hidden(l + 1)`. [N, D] each.
  let hiddenStates: [Tensor]
  /// Final RMSNorm output [N, D] and factors [N].
  public let finalNormed: Tensor
  public let finalRMS: Tensor

  /// - keys: keys visible to attention per sequence; T without a KV cache, the cache capacity
  ///   with one.
  public init(config c: LlamaConfig, batch: Int, length: Int, keepForBackward: Bool, keys: Int? = nil) {
    self.batch = batch
    self.length = length
    self.keepForBackward = keepForBackward
    let keyCount = keys ?? length
    layerBuffers = (0..<(keepForBackward ? c.layers : 1)).map { _ in
      Layer(c, batch: batch, length: length, keys: keyCount)
    }
    hiddenStates = (0..<(keepForBackward ? c.layers + 1 : 2)).map { _ in
      Tensor(zeros: [batch * length, c.hiddenSize])
    }
    finalNormed = Tensor(zeros: [batch * length, c.hiddenSize])
    finalRMS = Tensor(zeros: [batch * length])
  }

  public func layer(_ l: Int) -> Layer { layerBuffers[keepForBackward ? l : 0] }
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
