import LoRAKernels

/// DoRA on the model's linears: an adapter with `use_dora` makes each adapted linear
/// y = residual + g ⊙ (x·W0ᵀ + s·(x·Aᵀ)·Bᵀ) (+ bias), g = m / ‖W0 + s·B·A‖ per output row;
/// its backward takes the magnitude's gradient and scales dy by g before the frozen
/// product's input gradient and LoRA's (`DoRA`).
extension LlamaModel {
  /// Recomputes every module's row norms ‖W0 + s·B·A‖ from the adapter's current A and B
  /// (each full forward pass does, so they follow every update).
  /// - scratch: ≥ `DoRA.blockRows` × the widest module input floats.
  public func updateNorms(of adapter: LoRAAdapter, scratch: Tensor) {
    for m in adapter.modules {
      guard let norm = m.norm else { continue }
      DoRA.rowNorms(
        into: norm, weight: weights.layers[m.layer].matrix(m.target), a: m.a, b: m.b, scale: m.scale,
        scratch: scratch)
    }
  }

  /// Sets what an adapter's initialisation takes from the base: the virtual tokens' values
  /// (`initializeVirtualTokens`), PiSSA's A, B and frozen term (`initializePiSSA`), and
  /// DoRA's magnitudes, m = ‖W0 + s·B·A‖ per output row as PEFT starts them (so the adapted
  /// model starts as the LoRA one).
  public func initializeFromBase(_ adapter: LoRAAdapter, seed: UInt64) throws(LAPACKError) {
    initializeVirtualTokens(of: adapter, seed: seed)
    try initializePiSSA(adapter, seed: seed)
    resetMagnitudes(of: adapter)
  }

  /// DoRA's magnitudes set to ‖W0 + s·B·A‖ of the current A and B: the adapted model then
  /// equals plain LoRA with these A and B (nothing without DoRA).
  public func resetMagnitudes(of adapter: LoRAAdapter) {
    guard adapter.norms != nil else { return }
    let widest = adapter.modules.map(\.inFeatures).max() ?? 0
    updateNorms(of: adapter, scratch: Tensor(zeros: [DoRA.scratchCount(inFeatures: widest)]))
    for m in adapter.modules {
      if let magnitude = m.magnitude, let norm = m.norm { magnitude.copy(from: norm) }
    }
  }

  /// Before a projection's frozen product: copies the residual rows of each DoRA slot that
  /// `out` accumulates into (`accumulate`), so that `doraApply` can separate x·W0ᵀ from them.
  /// - out: [N, OUT].
  func doraSaveResidual(_ out: Tensor, layer: Int, target: LoRATarget, _ a: LlamaActivations) {
    for k in a.slots.indices where a.slots[k].adapter.module(layer: layer, target: target)?.norm != nil {
      let rows = slotRows(out, k, a)
      slotRows(a.doraScratch.view(offset: 0, shape: out.shape), k, a).copy(from: rows)
    }
  }

  /// After the frozen product (before any bias): on each DoRA slot's rows,
  /// z = out − residual (x·W0ᵀ) + s·(x·Aᵀ)·Bᵀ is kept, and out = residual + g ⊙ z. With LoRA
  /// dropout in training (PEFT's form), z = x_d·W0ᵀ + s·(x_d·Aᵀ)·Bᵀ for the dropped-out x_d
  /// (one more frozen product) and out = residual + x·W0ᵀ − x_d·W0ᵀ + g ⊙ z.
  /// - out: [N, OUT]; x: [N, IN]; weight: [OUT, IN].
  func doraApply(
    _ out: Tensor, _ x: Tensor, weight: FrozenMatrix, layer: Int, target: LoRATarget, _ a: LlamaActivations,
    accumulate: Bool
  ) {
    for k in a.slots.indices {
      guard let m = a.slots[k].adapter.module(layer: layer, target: target), let norm = m.norm,
        let magnitude = m.magnitude, let keptZ = a.layer(layer).doras[k][target],
        let keptU = a.layer(layer).loras[k][target]
      else { continue }
      let (xRows, outRows) = (slotRows(x, k, a), slotRows(out, k, a))
      let rows = xRows.shape[0]
      let z = keptZ.shape[0] == rows ? keptZ : keptZ.view(offset: 0, shape: [rows, m.outFeatures])
      let u = keptU.shape == [rows, m.rank] ? keptU : keptU.view(offset: 0, shape: [rows, m.rank])
      let residual = accumulate ? slotRows(a.doraScratch.view(offset: 0, shape: out.shape), k, a) : nil
      if a.slots[k].adapter.config.loraDropout > 0 && a.keepForBackward {
        let dropped = droppedInput(xRows, m, a, slot: k)
        weight.forward(into: z, dropped)
        outRows.subtract(z)
        LowRank.forward(z, u: u, x: dropped, a: m.a, b: m.b, scale: m.scale)
        DoRA.combine(outRows, residual: outRows, z: z, magnitude: magnitude, norms: norm)
        continue
      }
      z.copy(from: outRows)
      if let residual { z.subtract(residual) }
      LowRank.forward(z, u: u, x: xRows, a: m.a, b: m.b, scale: m.scale)
      DoRA.combine(outRows, residual: residual, z: z, magnitude: magnitude, norms: norm)
    }
  }

  /// The same for the rows of one sequence of slot k (a pass with a KV cache), no residual.
  /// - out: [T, OUT]; x: [T, IN]; sequence: its index within the slot.
  func doraApply(
    rows out: Tensor, _ x: Tensor, _ m: LoRAAdapter.Module, sequence: Int, _ act: LlamaActivations.Layer,
    slot k: Int
  ) {
    guard let norm = m.norm, let magnitude = m.magnitude, let keptZ = act.doras[k][m.target],
      let keptU = act.loras[k][m.target]
    else { return }
    let length = x.shape[0]
    let z = keptZ.view(offset: sequence * length * m.outFeatures, shape: [length, m.outFeatures])
    let u = keptU.view(offset: sequence * length * m.rank, shape: [length, m.rank])
    z.copy(from: out)
    LowRank.forward(z, u: u, x: x, a: m.a, b: m.b, scale: m.scale)
    DoRA.combine(out, residual: nil, z: z, magnitude: magnitude, norms: norm)
  }

  /// The DoRA part of a linear's backward, before its input gradients: each DoRA slot's
  /// magnitude gradient is added and its rows of dy are scaled by g in place (a slot with
  /// LoRA dropout is left to `doraDroppedBackward`).
  /// - dy: [N, OUT].
  func doraBackward(dy: Tensor, layer: Int, target: LoRATarget, _ a: LlamaActivations) {
    for k in a.slots.indices where a.slots[k].adapter.config.loraDropout == 0 {
      guard let m = a.slots[k].adapter.module(layer: layer, target: target), let norm = m.norm,
        let magnitude = m.magnitude, let gradMagnitude = m.gradMagnitude,
        let z = a.layer(layer).doras[k][target]
      else { continue }
      DoRA.backward(
        dy: slotRows(dy, k, a), z: z, magnitude: magnitude, norms: norm, gradMagnitude: gradMagnitude)
    }
  }

  /// Recomputes the row norms of every DoRA slot's adapter (a full forward pass).
  func doraUpdateNorms(_ a: LlamaActivations) {
    for slot in a.slots where slot.adapter.norms != nil {
      updateNorms(of: slot.adapter, scratch: a.doraScratch)
    }
  }

  /// The backward of a DoRA module with LoRA dropout on slot k's rows, after the frozen
  /// product's input gradient took dy as it is: the magnitude's gradient, A's and B's from
  /// g ⊙ dy and x_d, and into dx, through the dropout mask, s·(g ⊙ dy)·B·A + ((g − 1) ⊙ dy)·W0.
  /// - dx: [N, IN] or nil; dy: [N, OUT]; x: the linear's input [N, IN].
  func doraDroppedBackward(
    dx: Tensor?, dy: Tensor, x: Tensor, _ m: LoRAAdapter.Module, slot k: Int, _ a: LlamaActivations,
    _ g: LlamaGradients
  ) {
    guard let norm = m.norm, let magnitude = m.magnitude, let gradMagnitude = m.gradMagnitude,
      let z = a.layer(m.layer).doras[k][m.target], let u = a.layer(m.layer).loras[k][m.target]
    else { return }
    let (xRows, dyRows) = (slotRows(x, k, a), slotRows(dy, k, a))
    let rows = xRows.shape[0]
    let scaled = slotRows(a.doraScratch.view(offset: 0, shape: dy.shape), k, a)
    DoRA.backward(
      dy: dyRows, z: z, magnitude: magnitude, norms: norm, gradMagnitude: gradMagnitude, scaled: scaled)
    let du = g.du.view(offset: 0, shape: [rows, m.rank])
    let dropped = droppedInput(xRows, m, a, slot: k)
    LowRank.backward(
      dx: nil, gA: m.gradA, gB: m.gradB, dy: scaled, x: dropped, u: u, a: m.a, b: m.b, scale: m.scale, du: du)
    guard let dx else { return }
    let path = g.wide.view(offset: 0, shape: [rows, m.inFeatures])
    GEMM.multiply(into: path, du, m.a)
    scaled.subtract(dyRows)
    weights.layers[m.layer].matrix(m.target).inputGradient(into: path, scaled, beta: 1)
    let p = Float(a.slots[k].adapter.config.loraDropout)
    dropout(path, path, probability: p, m, a, slot: k)
    slotRows(dx, k, a).add(path)
  }
}
