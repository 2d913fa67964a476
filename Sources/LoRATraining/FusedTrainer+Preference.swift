import LoRAKernels
import LoRAModel

/// What the DPO slots of one fused pass report from inside the backward: each slot's part of
/// its loss and metrics (by slot index).
final class PreferenceParts {
  var values: [Int: DPOLoss.Evaluation] = [:]
}

extension FusedTrainer {
  /// For the DPO members among one pass's slots (`slots` in stack order, each a member and
  /// its micro-batch of pairs as chosen, rejected, …): the reference log-probabilities from
  /// the base alone over the member's own sequences (no adapter, no backward), and the
  /// sequence weights the backward calls with the policy's, which evaluate the DPO loss as a
  /// part of the mean over the member's global batch and record it in `parts`.
  func preferenceWeights(
    _ slots: [(member: Int, examples: [Example])], length: Int, gradients: LlamaGradients
  ) throws -> (weights: [Int: ([Double]) -> [Float]], parts: PreferenceParts) {
    let parts = PreferenceParts()
    var weights: [Int: ([Double]) -> [Float]] = [:]
    for (slot, (member, examples)) in slots.enumerated() {
      guard let loss = trainers[member].options.dpo else { continue }
      // The reference is the base alone: right for PiSSA (base = its start), not for a tree node.
      guard trainers[member].frozen == nil || trainers[member].frozen === trainers[member].adapter.initial
      else {
        throw DataError.invalidOption("DPO on a node of an adapter tree is not supported yet")
      }
      let batch = Batch(examples: examples, length: length, padID: padID)
      let reference = referenceActivations(sequences: batch.batch, length: length)
      model.forward(tokens: batch.tokens, activations: reference)
      let referenceLosses = model.sequenceLosses(
        targets: batch.targets, activations: reference, scratch: gradients.lossScratch,
        chunkRows: gradients.chunkRows)
      let meanOver = trainers[member].options.batchSize
      weights[slot] = { sums in
        let result = loss.evaluate(
          DPOLoss.Pair.pairs(policyLosses: sums, referenceLosses: referenceLosses), meanOver: meanOver)
        parts.values[slot] = result
        return result.sequenceWeights
      }
    }
    return (weights, parts)
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
