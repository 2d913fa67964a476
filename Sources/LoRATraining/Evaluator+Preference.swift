import LoRAKernels
import LoRAModel

extension Evaluator {
  /// DPO's loss and metrics over preference pairs (`examples` as chosen, rejected, chosen, …),
  /// as sums over the pairs (divide by their count for means): the policy is the model with
  /// the adapter, the reference the base alone. Without an adapter every reward is 0.
  /// - Returns: the summed loss, the summed metrics (`DPOMetrics.values` order) and the pairs.
  public func preferenceSums(of examples: [Example], loss: DPOLoss) -> (
    loss: Double, metrics: [Double], pairs: Int
  ) {
    precondition(examples.count % 2 == 0, "preference examples come in pairs")
    let pairsPerChunk = max(1, microBatch / 2)
    let longest = examples.map(\.tokens.count).max() ?? 1
    var lossSum = 0.0
    var metrics = [Double](repeating: 0, count: 6)
    for start in stride(from: 0, to: examples.count, by: 2 * pairsPerChunk) {
      let chunk = Array(examples[start..<min(start + 2 * pairsPerChunk, examples.count)])
      let batch = Batch(
        examples: chunk, length: Batch.bucketLength(chunk.map(\.tokens.count).max() ?? 1, longest: longest),
        padID: padID)
      let pairs = DPOLoss.Pair.pairs(
        policyLosses: sequenceLosses(batch, adapter: adapter),
        referenceLosses: sequenceLosses(batch, adapter: nil))
      let part = loss.evaluate(pairs, meanOver: pairs.count)
      lossSum += part.loss * Double(pairs.count)
      metrics = zip(metrics, part.metrics.values).map { $0 + $1 * Double(pairs.count) }
    }
    return (lossSum, metrics, examples.count / 2)
  }

  /// Each sequence's summed loss (−log p) of its trained tokens, with or without the adapter.
  private func sequenceLosses(_ batch: Batch, adapter: LoRAAdapter?) -> [Double] {
    let key = "\(batch.batch)@\(batch.length)" + (adapter == nil ? "-reference" : "")
    let a =
      preferenceBuffers[key]
      ?? LlamaActivations(
        config: model.config, batch: batch.batch, length: batch.length, keepForBackward: false,
        slots: adapter.map { [.init(adapter: $0, sequences: 0..<batch.batch, frozen: frozen)] } ?? [])
    preferenceBuffers[key] = a
    model.forward(tokens: batch.tokens, activations: a)
    return model.sequenceLosses(
      targets: batch.targets, activations: a, scratch: lossScratch, chunkRows: chunkRows)
  }
}
