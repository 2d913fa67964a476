import LoRAKernels

/// A Llama-family decoder over frozen weights: embedding, L × (RMSNorm, GQA attention with
/// RoPE, RMSNorm, SwiGLU MLP) with residuals, final RMSNorm, output head.
public final class LlamaModel: @unchecked Sendable {
  public let config: LlamaConfig
  public let weights: LlamaWeights
  public let rope: RoPETable

  public init(config: LlamaConfig, weights: LlamaWeights) {
    self.config = config
    self.weights = weights
    let scaling = config.ropeScaling
    var frequencies = RoPETable.inverseFrequencies(
      headSize: config.headSize, theta: config.ropeTheta, scalingType: scaling?.type,
      factor: scaling?.factor ?? 1,
      lowFrequencyFactor: scaling?.lowFrequencyFactor ?? 1,
      highFrequencyFactor: scaling?.highFrequencyFactor ?? 4,
      originalContextLength: scaling?.originalContextLength ?? 8192)
    if let factors = weights.ropeFrequencyFactors {
      for i in frequencies.indices { frequencies[i] /= Double(factors[i]) }
    }
    rope = RoPETable(
      headSize: config.headSize, maxPositions: min(config.contextLength, 1 << 16),
      inverseFrequencies: frequencies)
  }

  /// Runs the decoder over `tokens` (B sequences of T ids, sequence-major) and returns the
  /// final normalised hidden states [B·T, D] (`activations.finalNormed`).
  ///
  /// With a `cache`, the tokens continue the cached positions: their keys and values are
  /// appended to it and attention reads the whole cache (generation). Without one, each
  /// sequence starts at position 0 (training, scoring).
  @discardableResult
  public func forward(tokens: [Int32], activations a: LlamaActivations, cache: KVCache? = nil) -> Tensor {
    let c = config
    let (batch, length) = (a.batch, a.length)
    precondition(tokens.count == batch * length, "forward got \(tokens.count) tokens for \(batch)×\(length)")
    let start = cache?.length ?? 0
    if let cache {
      precondition(
        cache.batch == batch && start + length <= cache.capacity, "KV cache full or of another batch")
    }
    let keyLength = start + length
    let positions = (0..<batch).flatMap { _ in (start..<start + length).map { $0 } }
    let eps = Float(c.rmsNormEps)

    Embedding.forward(a.hidden(0), table: weights.embedding, ids: tokens)
    for (l, w) in weights.layers.enumerated() {
      let x = a.hidden(l)
      let out = a.hidden(l + 1)
      let act = a.layer(l)

      // Attention block.
      RMSNorm.forward(
        act.attentionNormed, reciprocalRMS: act.attentionRMS, x, weight: w.attentionNorm, eps: eps)
      Linear.forward(act.q, act.attentionNormed, weight: w.q, bias: w.qBias)
      rope.forward(act.q, heads: c.heads, positions: positions)
      let keys: Tensor
      let values: Tensor
      let keyStride: Int
      if let cache {
        keys = cache.keys[l]
        values = cache.values[l]
        keyStride = cache.capacity
        let rowWidth = c.kvHeads * c.headSize
        for b in 0..<batch {
          let rows = act.attentionNormed.view(
            offset: b * length * c.hiddenSize, shape: [length, c.hiddenSize])
          let offset = (b * cache.capacity + start) * rowWidth
          let kRows = keys.view(offset: offset, shape: [length, rowWidth])
          Linear.forward(kRows, rows, weight: w.k, bias: w.kBias)
          Linear.forward(
            values.view(offset: offset, shape: [length, rowWidth]), rows, weight: w.v, bias: w.vBias)
          rope.forward(kRows, heads: c.kvHeads, positions: Array(start..<start + length))
        }
      } else {
        Linear.forward(act.k, act.attentionNormed, weight: w.k, bias: w.kBias)
        Linear.forward(act.v, act.attentionNormed, weight: w.v, bias: w.vBias)
        rope.forward(act.k, heads: c.kvHeads, positions: positions)
        keys = act.k
        values = act.v
        keyStride = length
      }
      Attention.forward(
        act.attentionOut, probabilities: act.probabilities, q: act.q, k: keys, v: values, batch: batch,
        queryLength: length, keyLength: keyLength, keyStride: keyStride, heads: c.heads, kvHeads: c.kvHeads,
        headSize: c.headSize)
      // afterAttention = x + attentionOut · Woᵀ
      act.afterAttention.copy(from: x)
      GEMM.multiply(into: act.afterAttention, act.attentionOut, w.o, transposeB: .transposed, beta: 1)

      // MLP block.
      RMSNorm.forward(
        act.mlpNormed, reciprocalRMS: act.mlpRMS, act.afterAttention, weight: w.mlpNorm, eps: eps)
      Linear.forward(act.gate, act.mlpNormed, weight: w.gate)
      Linear.forward(act.up, act.mlpNormed, weight: w.up)
      SwiGLU.forward(act.activation, gate: act.gate, up: act.up)
      // out = afterAttention + activation · Wdownᵀ
      out.copy(from: act.afterAttention)
      GEMM.multiply(into: out, act.activation, w.down, transposeB: .transposed, beta: 1)
    }
    if let cache { cache.length += length }
    RMSNorm.forward(
      a.finalNormed, reciprocalRMS: a.finalRMS, a.hidden(c.layers), weight: weights.finalNorm, eps: eps)
    return a.finalNormed
  }

  /// Output-head logits of hidden rows.
  /// - out: [N, V]; hidden: [N, D].
  public func logits(into out: Tensor, hidden: Tensor) {
    GEMM.multiply(into: out, hidden, weights.output, transposeB: .transposed)
  }
}
