import LoRAKernels

/// A Llama-family decoder over frozen weights: embedding, L × (RMSNorm, GQA attention with
/// RoPE, RMSNorm, SwiGLU MLP) with residuals, final RMSNorm, output head; optionally with a
/// LoRA adapter on any of its linear layers.
public final class LlamaModel: @unchecked Sendable {
  public let config: LlamaConfig
  public let weights: LlamaWeights
  public let rope: RoPETable
  /// What attention's products multiply in for passes without a KV cache (training, scoring):
  /// nil follows the base (`attentionRoute`). Set it before passes run, not during them.
  public var attentionPrecision: Attention.Precision?

  /// The precision attention runs in for passes without a KV cache: `attentionPrecision`, or
  /// bf16 where the base's frozen products run in bf16 through oneDNN (a bf16 base on a CPU
  /// with native bf16) and fp32 elsewhere. Generation with a cache keeps fp32 attention: its
  /// one-row products are bound by reading the cache, which bf16 copies would not shorten.
  public var attentionRoute: Attention.Precision {
    Self.attentionRoute(asked: attentionPrecision, base: weights.precision)
  }

  /// The precision attention runs in when `asked` (nil: follow the base) over a base held in
  /// `base`: what `attentionRoute` gives, before a model exists (`plan`).
  public static func attentionRoute(asked: Attention.Precision?, base: StoredPrecision) -> Attention.Precision
  {
    asked ?? (base == .bf16 && BF16Products.route == .oneDNN && Attention.bf16Available ? .bf16 : .f32)
  }

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
  /// final normalised hidden states [B·T, D] (`activations.finalNormed`). The adapter, if
  /// any, is the one `activations` was made for.
  ///
  /// With a `cache`, the tokens continue the cached positions: their keys and values are
  /// appended to it and attention reads the whole cache (generation). Without one, each
  /// sequence starts at position 0 (training, scoring).
  @discardableResult
  public func forward(tokens: [Int32], activations a: LlamaActivations, cache: KVCache? = nil) -> Tensor {
    let c = config
    let (batch, length) = (a.batch, a.length)
    precondition(
      tokens.count == batch * a.tokenLength,
      "forward got \(tokens.count) tokens for \(batch)×\(a.tokenLength)")
    // DoRA's norms follow A and B: recomputed by every pass but a generation's next tokens.
    if (cache?.length ?? 0) == 0 && !a.holdNorms { doraUpdateNorms(a) }
    if let cache, a.virtual != nil {
      // Virtual tokens open the sequence: prompt rows go through this pass, prefix keys into the cache.
      precondition(cache.length == 0, "a pass with virtual tokens starts an empty cache")
      primeCache(cache, a)
    } else {
      prefixTable(a, compute: true)
    }
    let start = cache?.length ?? a.prefixLength
    if let cache {
      precondition(
        cache.batch == batch && start + length <= cache.capacity, "KV cache full or of another batch")
    }
    let positions = positionsOf(a, start: start)
    let eps = Float(c.rmsNormEps)

    embed(tokens: tokens, a)
    for l in 0..<c.layers {
      forwardLayer(l, a, cache: cache, start: start, positions: positions)
    }
    if let cache { cache.length += length }
    RMSNorm.forward(
      a.finalNormed, reciprocalRMS: a.finalRMS, a.hidden(c.layers), weight: weights.finalNorm, eps: eps)
    return a.finalNormed
  }

  /// Layer l of the forward pass: reads `a.hidden(l)`, writes `a.hidden(l + 1)` and the
  /// layer's kept buffers. Also the recomputation step of activation checkpointing.
  func forwardLayer(_ l: Int, _ a: LlamaActivations, cache: KVCache?, start: Int, positions: [Int]) {
    let c = config
    let (batch, length) = (a.batch, a.length)
    let eps = Float(c.rmsNormEps)
    let w = weights.layers[l]
    let x = a.hidden(l)
    let out = a.hidden(l + 1)
    let act = a.layer(l)

    // Attention block.
    RMSNorm.forward(a.normed, reciprocalRMS: act.attentionRMS, x, weight: w.attentionNorm, eps: eps)
    project(act.q, a.normed, w.q, w.qBias, l, .q, a)
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
        let rows = a.normed.view(offset: b * length * c.hiddenSize, shape: [length, c.hiddenSize])
        let offset = (b * cache.capacity + start) * rowWidth
        let kRows = keys.view(offset: offset, shape: [length, rowWidth])
        let vRows = values.view(offset: offset, shape: [length, rowWidth])
        for (target, destination, weight, bias) in [
          (LoRATarget.k, kRows, w.k, w.kBias), (.v, vRows, w.v, w.vBias),
        ] {
          weight.forward(into: destination, rows)
          for (k, slot) in a.slots.enumerated() where slot.sequences.contains(b) {
            guard let m = slot.adapter.module(layer: l, target: target), m.norm != nil else { continue }
            doraApply(rows: destination, rows, m, sequence: b - slot.sequences.lowerBound, act, slot: k)
          }
          if let bias { Linear.addBias(destination, bias) }
          for (k, slot) in a.slots.enumerated() where slot.sequences.contains(b) {
            chainForward(rows: destination, rows, layer: l, target: target, frozen: slot.frozen, a)
            guard let m = slot.adapter.module(layer: l, target: target), m.norm == nil,
              let u = act.loras[k][target]
            else { continue }
            let offset = (b - slot.sequences.lowerBound) * length * m.rank
            let uRows = u.view(offset: offset, shape: [length, m.rank])
            LowRank.forward(destination, u: uRows, x: rows, a: m.a, b: m.b, scale: m.scale)
          }
        }
        rope.forward(kRows, heads: c.kvHeads, positions: Array(start..<start + length))
      }
    } else {
      project(act.k, a.normed, w.k, w.kBias, l, .k, a)
      project(act.v, a.normed, w.v, w.vBias, l, .v, a)
      rope.forward(act.k, heads: c.kvHeads, positions: positions)
      if a.prefixLength > 0 {
        joinPrefix(layer: l, keys: act.k, values: act.v, a)
        (keys, values) = (a.joinedKeys, a.joinedValues)
      } else {
        (keys, values) = (act.k, act.v)
      }
      keyStride = a.keyLength
    }
    Attention.forward(
      act.attentionOut, q: act.q, k: keys, v: values, scratch: a.attentionScratch, batch: batch,
      queryLength: length, keyLength: start + length, keyStride: keyStride, heads: c.heads,
      kvHeads: c.kvHeads,
      headSize: c.headSize, window: c.slidingWindow, spans: cache == nil ? a.spans : nil,
      precision: cache == nil ? attentionRoute : .f32)
    // afterAttention = x + attentionOut · Woᵀ (+ LoRA)
    act.afterAttention.copy(from: x)
    project(act.afterAttention, act.attentionOut, w.o, nil, l, .o, a, accumulate: true)

    // MLP block.
    RMSNorm.forward(a.normed, reciprocalRMS: act.mlpRMS, act.afterAttention, weight: w.mlpNorm, eps: eps)
    project(act.gate, a.normed, w.gate, nil, l, .gate, a)
    project(act.up, a.normed, w.up, nil, l, .up, a)
    SwiGLU.forward(a.activation, gate: act.gate, up: act.up)
    // out = afterAttention + activation · Wdownᵀ (+ LoRA)
    out.copy(from: act.afterAttention)
    project(out, a.activation, w.down, nil, l, .down, a, accumulate: true)
  }

  /// Output-head logits of hidden rows.
  /// - out: [N, V]; hidden: [N, D].
  public func logits(into out: Tensor, hidden: Tensor) {
    weights.output.forward(into: out, hidden)
  }

  /// Positions of every row: each sequence (each span, when packed) counts from `start`.
  func positionsOf(_ a: LlamaActivations, start: Int) -> [Int] {
    guard let spans = a.spans else {
      return (0..<a.batch).flatMap { _ in (start..<start + a.length).map { $0 } }
    }
    var positions = [Int](repeating: 0, count: a.batch * a.length)
    for span in spans {
      for i in 0..<span.count { positions[span.row * a.length + span.start + i] = start + i }
    }
    return positions
  }

  /// out (=|+=) x·Wᵀ (+ bias) (+ the frozen chain's s·x·Aᵀ·Bᵀ and s·dropout(x)·Aᵀ·Bᵀ on
  /// each slot's rows whose adapters cover this linear; DoRA's rescaled form on a DoRA slot's).
  /// - out: [N, OUT]; x: [N, IN]; weight: [OUT, IN].
  private func project(
    _ out: Tensor, _ x: Tensor, _ weight: FrozenMatrix, _ bias: Tensor?, _ layer: Int, _ target: LoRATarget,
    _ a: LlamaActivations, accumulate: Bool = false
  ) {
    let dora = a.slots.contains { $0.adapter.module(layer: layer, target: target)?.norm != nil }
    if dora && accumulate { doraSaveResidual(out, layer: layer, target: target, a) }
    weight.forward(into: out, x, beta: accumulate ? 1 : 0)
    if dora { doraApply(out, x, weight: weight, layer: layer, target: target, a, accumulate: accumulate) }
    if let bias { Linear.addBias(out, bias) }
    for k in a.slots.indices {
      // PiSSA: s·B·A·x − s·B₀·A₀·x summed apart, then added: exactly 0 while B, A = B₀, A₀,
      // so the model is the base's bits at step 0 (a bf16 base amplifies any last-bit change).
      let pissa = a.slots[k].isPiSSA && a.slots[k].frozen?.module(layer: layer, target: target) != nil
      let sum = pissa ? a.doraScratch.view(offset: 0, shape: out.shape) : out
      if pissa { slotRows(sum, k, a).zero() }
      defer { if pissa { slotRows(out, k, a).add(slotRows(sum, k, a)) } }
      chainForward(sum, x, layer: layer, target: target, a, slot: k)
      guard let m = a.slots[k].adapter.module(layer: layer, target: target), m.norm == nil,
        let u = a.layer(layer).loras[k][target]
      else { continue }
      let (xRows, outRows) = (slotRows(x, k, a), slotRows(sum, k, a))
      let input = droppedInput(xRows, m, a, slot: k)
      // Kept activations hold exactly [rows, R]; a shared inference buffer is sized for the largest rank.
      let rows = xRows.shape[0]
      let uRows = u.shape == [rows, m.rank] ? u : u.view(offset: 0, shape: [rows, m.rank])
      LowRank.forward(outRows, u: uRows, x: input, a: m.a, b: m.b, scale: m.scale)
    }
  }

  /// The rows of `t` ([N, W]) that slot `k` covers: `t` itself when the slot is the whole batch.
  func slotRows(_ t: Tensor, _ k: Int, _ a: LlamaActivations) -> Tensor {
    let sequences = a.slots[k].sequences
    if sequences.count == a.batch { return t }
    let width = t.shape[1]
    return t.view(
      offset: sequences.lowerBound * a.length * width, shape: [sequences.count * a.length, width])
  }

  /// x itself, or, in a training pass, x after this module's dropout mask (regenerated from
  /// slot k's seed). Inference passes (evaluation, generation) never drop, as PEFT's eval mode.
  func droppedInput(_ x: Tensor, _ m: LoRAAdapter.Module, _ a: LlamaActivations, slot k: Int) -> Tensor {
    let p = Float(a.slots[k].adapter.config.loraDropout)
    guard p > 0 && a.keepForBackward else { return x }
    let out = a.dropped.view(offset: 0, shape: x.shape)
    dropout(out, x, probability: p, m, a, slot: k)
    return out
  }

  /// Module m's dropout on slot k's rows (x, out: [sequences·T, IN]): each sequence's mask
  /// from its own stream (the slot's seed, the module and the sequence's place in its
  /// update's batch), so it depends neither on T nor on the other sequences of the pass.
  func dropout(
    _ out: Tensor, _ x: Tensor, probability p: Float, _ m: LoRAAdapter.Module, _ a: LlamaActivations,
    slot k: Int
  ) {
    let module = UInt64(m.layer * LoRATarget.allCases.count + LoRATarget.allCases.firstIndex(of: m.target)!)
    let seed = a.dropoutSeeds[k] &+ (module &+ 1) &* 0x9E37_79B9_7F4A_7C15
    let numbers = a.sequenceNumbers
    if a.spans != nil {
      let (spans, rows) = a.slotSpans[k]
      Dropout.apply(out, x, probability: p, sequences: rows) { s in
        seed &+ UInt64((numbers.isEmpty ? spans[s] : numbers[spans[s]]) &+ 1) &* 0xBF58_476D_1CE4_E5B9
      }
      return
    }
    let first = a.slots[k].sequences.lowerBound
    Dropout.apply(out, x, probability: p, rowsPerSequence: a.length) { s in
      let number = numbers.isEmpty ? s : numbers[first + s]
      return seed &+ UInt64(number &+ 1) &* 0xBF58_476D_1CE4_E5B9
    }
  }
}
