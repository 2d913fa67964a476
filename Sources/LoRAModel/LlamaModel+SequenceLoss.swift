import LoRAKernels

/// Losses over whole sequences (DPO's log-probabilities of a response): each sequence's
/// summed token loss, and the backward of a weighted sum of them whose weights are known
/// only once every sequence's loss is. One pass through the output head either way: its
/// gradient is linear in each row's weight, so the rows are computed at weight 1 and scaled.
extension LlamaModel {
  /// Each sequence's summed loss over its trained positions (−log p of its trained tokens),
  /// after `forward(…activations: a)`; no gradients. Packed rows (`a.spans`) give one sum per
  /// span, padding spans included (0).
  /// - targets: B·T next-token ids, −1 where untrained. Returns: [B], or one per span.
  public func sequenceLosses(targets: [Int32], activations a: LlamaActivations, gradients g: LlamaGradients)
    -> [Double]
  {
    sequenceLosses(targets: targets, activations: a, scratch: g.lossScratch, chunkRows: g.chunkRows)
  }

  /// The same with a scratch of `OutputLoss.scratchCount(chunkRows:width:vocabulary:)` floats.
  public func sequenceLosses(
    targets: [Int32], activations a: LlamaActivations, scratch: Tensor, chunkRows: Int
  )
    -> [Double]
  {
    let owner = Self.owners(a.sequenceRows(slot: nil), rows: a.batch * a.length)
    var sums = [Double](repeating: 0, count: owner.sequences)
    _ = OutputLoss.forwardBackward(
      dHidden: nil, hidden: a.finalNormed, head: weights.output, targets: rowTargets(targets, a),
      gradientScale: 1, scratch: scratch, chunkRows: chunkRows
    ) { row, loss in sums[owner.of[row]] += loss }
    return sums
  }

  /// The sequence each of `rows` rows belongs to, from the sequences' row ranges (which tile
  /// them, as `LlamaActivations.sequenceRows` gives them).
  static func owners(_ ranges: [Range<Int>], rows: Int) -> (of: [Int], sequences: Int) {
    var of = [Int](repeating: 0, count: rows)
    for (s, range) in ranges.enumerated() { for row in range { of[row] = s } }
    return (of, ranges.count)
  }

  /// Each sequence's summed loss as `sequenceLosses` gives it, and the gradients of
  /// Σ_b weights[b] × (sequence b's summed loss) added into the adapter's buffers, where
  /// `weights` is called once with the B summed losses and returns B weights. One adapter
  /// (no fused slots).
  /// - targets: B·T next-token ids, −1 where untrained. Returns: the B summed losses.
  public func backward(
    targets: [Int32], activations a: LlamaActivations, gradients g: LlamaGradients,
    sequenceWeights weights: ([Double]) -> [Float]
  ) -> [Double] {
    precondition(a.slots.count <= 1, "sequence-weighted backward of one adapter")
    var sums: [Double] = []
    withoutActuallyEscaping(weights) { weights in
      _ = backward(
        targets: targets, activations: a, gradients: g, gradientScales: [1],
        sequenceWeights: [
          0: { losses in
            sums = losses
            return weights(losses)
          }
        ])
    }
    return sums
  }
}
