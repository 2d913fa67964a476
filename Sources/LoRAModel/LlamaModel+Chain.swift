import LoRAKernels

/// A tree node trains on the base plus its ancestors' ΔW: each slot's `frozen` adapter (the
/// chain, flattened) adds s·x·Aᵀ·Bᵀ to every linear it covers, and its input gradient on the
/// way back; it has no gradients of its own.
extension LlamaModel {
  /// out += s·x·Aᵀ·Bᵀ of slot k's frozen module at (`layer`, `target`), on the slot's rows.
  /// - out: [N, OUT]; x: [N, IN] (the whole batch's rows).
  func chainForward(
    _ out: Tensor, _ x: Tensor, layer: Int, target: LoRATarget, _ a: LlamaActivations, slot k: Int
  ) {
    guard let m = a.slots[k].frozen?.module(layer: layer, target: target) else { return }
    let (xRows, outRows) = (slotRows(x, k, a), slotRows(out, k, a))
    let u = a.chain.view(offset: 0, shape: [xRows.shape[0], m.rank])
    LowRank.forward(outRows, u: u, x: xRows, a: m.a, b: m.b, scale: m.scale)
  }

  /// The same for the rows of one sequence (generation with a KV cache).
  /// - out: [T, OUT]; x: [T, IN].
  func chainForward(
    rows out: Tensor, _ x: Tensor, layer: Int, target: LoRATarget, frozen: LoRAAdapter?, _ a: LlamaActivations
  ) {
    guard let m = frozen?.module(layer: layer, target: target) else { return }
    let u = a.chain.view(offset: 0, shape: [x.shape[0], m.rank])
    LowRank.forward(out, u: u, x: x, a: m.a, b: m.b, scale: m.scale)
  }

  /// dx += s·dy·B·A of slot k's frozen module, on the slot's rows.
  /// - dx: [N, IN]; dy: [N, OUT].
  func chainBackward(
    dx: Tensor, dy: Tensor, layer: Int, target: LoRATarget, _ a: LlamaActivations, slot k: Int
  ) {
    guard let m = a.slots[k].frozen?.module(layer: layer, target: target) else { return }
    let (dyRows, dxRows) = (slotRows(dy, k, a), slotRows(dx, k, a))
    let du = a.chain.view(offset: 0, shape: [dyRows.shape[0], m.rank])
    LowRank.inputGradient(dx: dxRows, dy: dyRows, a: m.a, b: m.b, scale: m.scale, du: du)
  }

  /// Whether any slot's trained or frozen adapter covers `target` of `layer`.
  func adapted(_ a: LlamaActivations, layer: Int, target: LoRATarget) -> Bool {
    a.slots.contains {
      $0.adapter.module(layer: layer, target: target) != nil
        || $0.frozen?.module(layer: layer, target: target) != nil
    }
  }
}
