import LoRAKernels
import LoRAModel

extension FusedTrainer {
  /// One micro-batch of a DPO member (its pairs as chosen, rejected, chosen, …): the
  /// reference log-probabilities from the base alone (no adapter, no backward), then the
  /// policy's forward and the sequence-weighted backward of the DPO loss, its gradients added
  /// into the member's buffers. Returns the loss and metrics as parts of the mean over
  /// `meanOver` pairs (the global batch).
  func preferenceRound(
    member: Int, batch: Batch, activations: LlamaActivations, gradients: LlamaGradients, loss: DPOLoss,
    meanOver: Int
  ) throws -> DPOLoss.Evaluation {
    guard trainers[member].frozen == nil else {
      throw DataError.invalidOption("DPO on a node of an adapter tree is not supported yet")
    }
    let reference = referenceActivations(sequences: batch.batch, length: activations.tokenLength)
    model.forward(tokens: batch.tokens, activations: reference)
    let referenceLosses = model.sequenceLosses(
      targets: batch.targets, activations: reference, scratch: gradients.lossScratch,
      chunkRows: gradients.chunkRows)
    model.forward(tokens: batch.tokens, activations: activations)
    var evaluation: DPOLoss.Evaluation?
    _ = model.backward(targets: batch.targets, activations: activations, gradients: gradients) { sums in
      let pairs = stride(from: 0, to: sums.count, by: 2).map {
        DPOLoss.Pair(
          policyChosen: -sums[$0], policyRejected: -sums[$0 + 1], referenceChosen: -referenceLosses[$0],
          referenceRejected: -referenceLosses[$0 + 1])
      }
      let result = loss.evaluate(pairs, meanOver: meanOver)
      evaluation = result
      // The backward weighs each sequence's summed loss (−log p): ∂L/∂(−log p) = −∂L/∂log p.
      return result.gradients.flatMap { [Float(-$0.chosen), Float(-$0.rejected)] }
    }
    return evaluation!
  }

  /// Inference buffers of the base alone for `sequences` rows of `length` tokens (kept; not
  /// from the arena, so they never overlap the training buffers).
  private func referenceActivations(sequences: Int, length: Int) -> LlamaActivations {
    let key = "\(sequences)@\(length)"
    if let existing = referenceBuffers[key] { return existing }
    let made = LlamaActivations(
      config: model.config, batch: sequences, length: length, keepForBackward: false)
    referenceBuffers[key] = made
    return made
  }
}
