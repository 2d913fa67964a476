import LoRAKernels

/// Scratch for one backward pass over N = B·T rows, reused by every layer (one set, not one
/// per layer). Shapes: stream, afterAttention, normedGradient, normed [N, D]; dq, attentionOut
/// gradient [N, H·HS]; dk, dv [N, KVH·HS]; gate, up gradients and activation [N, F];
/// du [N, max R]; wide [N, max IN]; loss scratch for `chunkRows` rows of logits.
public final class LlamaGradients: @unchecked Sendable {
  let stream: Tensor
  let afterAttention: Tensor
  let normedGradient: Tensor
  let normed: Tensor
  let dq: Tensor
  let dk: Tensor
  let dv: Tensor
  let attentionOut: Tensor
  let gate: Tensor
  let up: Tensor
  let activation: Tensor
  let du: Tensor
  let wide: Tensor
  let attentionScratch: Tensor
  public let lossScratch: Tensor
  public let chunkRows: Int

  /// - length: rows per sequence (`LlamaActivations.length`); keys: keys attention reads per
  ///   sequence (`LlamaActivations.keyLength`; nil: `length`); sequenceLength: packed rows'
  ///   longest sequence (`LlamaActivations.init`).
  public init(
    config c: LlamaConfig, batch: Int, length: Int, keys: Int? = nil, maxRank: Int,
    chunkRows: Int = OutputLoss.trainingChunkRows,
    arena: TensorArena? = nil, sequenceLength: Int? = nil
  ) {
    let allocate: ([Int]) -> Tensor = { shape in arena?.tensor(shape) ?? Tensor(zeros: shape) }
    let n = batch * length
    stream = allocate([n, c.hiddenSize])
    afterAttention = allocate([n, c.hiddenSize])
    normedGradient = allocate([n, c.hiddenSize])
    normed = allocate([n, c.hiddenSize])
    dq = allocate([n, c.heads * c.headSize])
    dk = allocate([n, c.kvHeads * c.headSize])
    dv = allocate([n, c.kvHeads * c.headSize])
    attentionOut = allocate([n, c.heads * c.headSize])
    gate = allocate([n, c.intermediateSize])
    up = allocate([n, c.intermediateSize])
    activation = allocate([n, c.intermediateSize])
    du = allocate([n * max(maxRank, 1)])
    wide = allocate([n * max(c.hiddenSize, c.intermediateSize, c.heads * c.headSize)])
    let sequence = min(length, sequenceLength ?? length)
    attentionScratch = allocate(
      [
        Attention.scratchCount(
          queryLength: sequence, keyLength: keys.map { $0 - length + sequence } ?? sequence,
          bf16: (c.headSize, c.heads / c.kvHeads))
      ])
    self.chunkRows = chunkRows
    lossScratch = allocate(
      [OutputLoss.scratchCount(chunkRows: chunkRows, width: c.hiddenSize, vocabulary: c.vocabularySize)])
  }
}

extension LlamaModel {
  /// The summed loss of the trained positions of a forward pass, without gradients.
  /// - targets: B·T next-token ids, −1 where untrained.
  public func loss(targets: [Int32], activations a: LlamaActivations, gradients g: LlamaGradients) -> (
    lossSum: Double, count: Int
  ) {
    loss(targets: targets, activations: a, scratch: g.lossScratch, chunkRows: g.chunkRows)
  }

  /// The same, with a scratch of `OutputLoss.scratchCount(chunkRows:width:vocabulary:)` floats.
  public func loss(targets: [Int32], activations a: LlamaActivations, scratch: Tensor, chunkRows: Int) -> (
    lossSum: Double, count: Int
  ) {
    OutputLoss.forwardBackward(
      dHidden: nil, hidden: a.finalNormed, head: weights.output, targets: rowTargets(targets, a),
      gradientScale: 1, scratch: scratch, chunkRows: chunkRows)
  }

  /// The loss of the trained positions after `forward(…activations: a)`, and the gradients of
  /// `gradientScale` × that summed loss with respect to the adapter's A and B, added into
  /// `a.adapter.gradients` (the frozen base gets none: only input gradients flow through it).
  /// Pass 1 / (trained tokens of the whole global batch) as `gradientScale` for a mean loss.
  /// - targets: B·T next-token ids, −1 where untrained.
  public func backward(
    targets: [Int32], activations a: LlamaActivations, gradients g: LlamaGradients, gradientScale: Float
  ) -> (lossSum: Double, count: Int) {
    let results = backward(targets: targets, activations: a, gradients: g, gradientScales: [gradientScale])
    return (results.reduce(0) { $0 + $1.lossSum }, results.reduce(0) { $0 + $1.count })
  }

  /// The same for a fused batch: each slot's loss (on its sequences' rows) and the gradients
  /// of `gradientScales[k]` × slot k's summed loss, added into slot k's adapter. With one
  /// scale and no slots (or one), it is the single-adapter backward. A slot in
  /// `sequenceWeights` (by slot index) instead gets the gradients of Σ_b w_b × (its sequence
  /// b's summed loss), w = sequenceWeights[k](its sequences' summed losses), e.g. DPO's: its
  /// rows go through the head at weight 1 and are scaled once every sequence's loss is known
  /// (packed rows: one loss and weight per span of the slot, padding spans included).
  /// - targets: B·T next-token ids, −1 where untrained; gradientScales: one per slot.
  public func backward(
    targets: [Int32], activations a: LlamaActivations, gradients g: LlamaGradients, gradientScales: [Float],
    sequenceWeights: [Int: ([Double]) -> [Float]] = [:]
  ) -> [(lossSum: Double, count: Int)] {
    precondition(a.keepForBackward, "backward needs activations made with keepForBackward")
    precondition(gradientScales.count == max(a.slots.count, 1), "one gradient scale per slot")
    let targets = rowTargets(targets, a)
    var results: [(lossSum: Double, count: Int)] = []
    if a.slots.count > 1 { g.normedGradient.zero() }  // rows outside every slot get no gradient
    for k in 0..<max(a.slots.count, 1) {
      let sequences = a.slots.count > 1 ? a.slots[k].sequences : 0..<a.batch
      let rows = sequences.lowerBound * a.length..<sequences.upperBound * a.length
      let dHidden = a.slots.count > 1 ? slotRows(g.normedGradient, k, a) : g.normedGradient
      let hidden = a.slots.count > 1 ? slotRows(a.finalNormed, k, a) : a.finalNormed
      let slotTargets = a.slots.count > 1 ? Array(targets[rows]) : targets
      guard let weigh = sequenceWeights[k] else {
        results.append(
          OutputLoss.forwardBackward(
            dHidden: dHidden, hidden: hidden, head: weights.output, targets: slotTargets,
            gradientScale: gradientScales[k], scratch: g.lossScratch, chunkRows: g.chunkRows))
        continue
      }
      let ranges = a.sequenceRows(slot: a.slots.isEmpty ? nil : k)
      let owner = Self.owners(ranges, rows: rows.count)
      var sums = [Double](repeating: 0, count: owner.sequences)
      results.append(
        OutputLoss.forwardBackward(
          dHidden: dHidden, hidden: hidden, head: weights.output, targets: slotTargets, gradientScale: 1,
          scratch: g.lossScratch, chunkRows: g.chunkRows
        ) { row, loss in sums[owner.of[row]] += loss })
      let scales = weigh(sums)
      precondition(scales.count == ranges.count, "one weight per sequence")
      let width = config.hiddenSize
      for (range, scale) in zip(ranges, scales) {
        dHidden.view(offset: range.lowerBound * width, shape: [range.count, width]).scale(by: scale)
      }
    }
    backwardThroughLayers(a, g)
    return results
  }

  /// From d(final normed hidden) in `g.normedGradient` down through the layers: the adapter's
  /// gradients (and the virtual tokens') added into its buffers.
  func backwardThroughLayers(_ a: LlamaActivations, _ g: LlamaGradients) {
    let c = config
    // Virtual tokens train in every layer (prompt rows need the embedding's gradient).
    let lowestModule = a.slots.flatMap({ $0.adapter.modules.map(\.layer) }).min()
    guard let lowest = a.virtual != nil ? 0 : lowestModule else { return }
    g.stream.zero()
    a.prefixTableGradient.zero()
    RMSNorm.backward(
      g.stream, g.normedGradient, a.hidden(c.layers), reciprocalRMS: a.finalRMS, weight: weights.finalNorm)
    let positions = positionsOf(a, start: a.prefixLength)

    // Gradients flow down only as far as the lowest adapted layer: nothing below it trains,
    // and that layer's own input gradient would feed nothing.
    for l in stride(from: c.layers - 1, through: lowest, by: -1) {
      if a.checkpointed {
        // Rebuild this layer's buffers from its kept input (same ops, same dropout seeds, so
        // the same values as the first pass; hidden(l + 1) is rewritten with what it held).
        forwardLayer(l, a, cache: nil, start: a.prefixLength, positions: positions)
      }
      let w = weights.layers[l]
      let x = a.hidden(l)
      let act = a.layer(l)
      // g.stream holds d(out) of this layer.

      // MLP block: out = h + SwiGLU(gate, up)·Wdownᵀ.
      g.afterAttention.copy(from: g.stream)
      doraBackward(dy: g.stream, layer: l, target: .down, a)
      w.down.inputGradient(into: g.gate, g.stream)  // d activation [N, F]
      if adapted(a, layer: l, target: .down) {
        SwiGLU.forward(g.activation, gate: act.gate, up: act.up)
        adapterBackward(dx: g.gate, dy: g.stream, x: g.activation, layer: l, target: .down, a, g)
      }
      SwiGLU.backward(dgate: g.gate, dup: g.up, dout: g.gate, gate: act.gate, up: act.up)
      RMSNorm.recompute(g.normed, act.afterAttention, reciprocalRMS: act.mlpRMS, weight: w.mlpNorm)
      doraBackward(dy: g.gate, layer: l, target: .gate, a)
      doraBackward(dy: g.up, layer: l, target: .up, a)
      w.gate.inputGradient(into: g.normedGradient, g.gate)
      w.up.inputGradient(into: g.normedGradient, g.up, beta: 1)
      adapterBackward(dx: g.normedGradient, dy: g.gate, x: g.normed, layer: l, target: .gate, a, g)
      adapterBackward(dx: g.normedGradient, dy: g.up, x: g.normed, layer: l, target: .up, a, g)
      RMSNorm.backward(
        g.afterAttention, g.normedGradient, act.afterAttention, reciprocalRMS: act.mlpRMS, weight: w.mlpNorm)

      // Attention block: h = x + attention(RMSNorm(x))·Woᵀ.
      g.stream.copy(from: g.afterAttention)
      doraBackward(dy: g.afterAttention, layer: l, target: .o, a)
      w.o.inputGradient(into: g.attentionOut, g.afterAttention)
      adapterBackward(
        dx: g.attentionOut, dy: g.afterAttention, x: act.attentionOut, layer: l, target: .o, a, g)
      if a.prefixLength > 0 {
        joinPrefix(layer: l, keys: act.k, values: act.v, a)
        a.joinedKeyGradient.zero()
        a.joinedValueGradient.zero()
        Attention.backward(
          dq: g.dq, dk: a.joinedKeyGradient, dv: a.joinedValueGradient, dOut: g.attentionOut, q: act.q,
          k: a.joinedKeys, v: a.joinedValues, scratch: g.attentionScratch, batch: a.batch,
          queryLength: a.length,
          keyLength: a.keyLength, keyStride: a.keyLength, heads: c.heads, kvHeads: c.kvHeads,
          headSize: c.headSize, window: c.slidingWindow, precision: attentionRoute)
        splitPrefixGradient(layer: l, dk: g.dk, dv: g.dv, a)
      } else {
        g.dk.zero()
        g.dv.zero()
        Attention.backward(
          dq: g.dq, dk: g.dk, dv: g.dv, dOut: g.attentionOut, q: act.q, k: act.k, v: act.v,
          scratch: g.attentionScratch,
          batch: a.batch, queryLength: a.length, keyLength: a.length, keyStride: a.length, heads: c.heads,
          kvHeads: c.kvHeads, headSize: c.headSize, window: c.slidingWindow, spans: a.spans,
          precision: attentionRoute)
      }
      rope.backward(g.dq, heads: c.heads, positions: positions)
      rope.backward(g.dk, heads: c.kvHeads, positions: positions)
      doraBackward(dy: g.dq, layer: l, target: .q, a)
      doraBackward(dy: g.dk, layer: l, target: .k, a)
      doraBackward(dy: g.dv, layer: l, target: .v, a)
      RMSNorm.recompute(g.normed, x, reciprocalRMS: act.attentionRMS, weight: w.attentionNorm)
      let inputGradient = l > lowest || a.virtualRows > 0 ? g.normedGradient : nil
      if let inputGradient {
        w.q.inputGradient(into: inputGradient, g.dq)
        w.k.inputGradient(into: inputGradient, g.dk, beta: 1)
        w.v.inputGradient(into: inputGradient, g.dv, beta: 1)
      }
      adapterBackward(dx: inputGradient, dy: g.dq, x: g.normed, layer: l, target: .q, a, g)
      adapterBackward(dx: inputGradient, dy: g.dk, x: g.normed, layer: l, target: .k, a, g)
      adapterBackward(dx: inputGradient, dy: g.dv, x: g.normed, layer: l, target: .v, a, g)
      if let inputGradient {
        RMSNorm.backward(g.stream, inputGradient, x, reciprocalRMS: act.attentionRMS, weight: w.attentionNorm)
      }
      // g.stream now holds d(x), the previous layer's d(out). The embedding is frozen.
    }
    finishVirtualBackward(dHidden: g.stream, a)
  }

  /// Adds the LoRA gradients of one adapted linear (for each slot whose adapter adapts
  /// `target` of `layer`, on that slot's rows) into the slot adapter's gradient buffer, and
  /// its input gradient, and that of the slot's frozen chain, into dx.
  /// - dx: [N, IN]; dy: [N, OUT]; x: the linear's input [N, IN] (before dropout).
  private func adapterBackward(
    dx: Tensor?, dy: Tensor, x: Tensor, layer: Int, target: LoRATarget, _ a: LlamaActivations,
    _ g: LlamaGradients
  ) {
    for k in a.slots.indices {
      if let dx { chainBackward(dx: dx, dy: dy, layer: layer, target: target, a, slot: k) }
      let adapter = a.slots[k].adapter
      guard let m = adapter.module(layer: layer, target: target), let u = a.layer(layer).loras[k][target]
      else { continue }
      let (xRows, dyRows) = (slotRows(x, k, a), slotRows(dy, k, a))
      let dxRows = dx.map { slotRows($0, k, a) }
      let rows = xRows.shape[0]
      let du = g.du.view(offset: 0, shape: [rows, m.rank])
      let dropout = Float(adapter.config.loraDropout)
      if dropout > 0 && m.norm != nil {
        doraDroppedBackward(dx: dx, dy: dy, x: x, m, slot: k, a, g)
        continue
      }
      if dropout == 0 {
        LowRank.backward(
          dx: dxRows, gA: m.gradA, gB: m.gradB, dy: dyRows, x: xRows, u: u, a: m.a, b: m.b, scale: m.scale,
          du: du)
        continue
      }
      let input = droppedInput(xRows, m, a, slot: k)
      LowRank.backward(
        dx: nil, gA: m.gradA, gB: m.gradB, dy: dyRows, x: input, u: u, a: m.a, b: m.b, scale: m.scale, du: du)
      guard let dxRows else { continue }
      // The input gradient of the low-rank path goes back through the same dropout mask.
      let path = g.wide.view(offset: 0, shape: [rows, m.inFeatures])
      GEMM.multiply(into: path, du, m.a)
      self.dropout(path, path, probability: dropout, m, a, slot: k)
      dxRows.add(path)
    }
  }
}
