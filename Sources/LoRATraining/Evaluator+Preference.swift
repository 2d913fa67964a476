import LoRAKernels
import LoRAModel

extension Evaluator {
  /// DPO's loss and metrics over preference pairs (`examples` as chosen, rejected, chosen, …),
  /// as sums over the pairs (divide by their count for means): the policy is the model with
  /// the adapter, the reference where it started (the base alone, or a tree node's ancestors
  /// over it). Without an adapter every reward is 0.
  /// Padding-free (as `meanLoss`): a pass takes consecutive pairs end to end while their
  /// tokens fit in the rows of `microBatch / 2` pairs of the longest.
  /// `reference`: the reference's losses of `examples` from `referenceLosses(of: examples,
  /// longest: their longest)` (the same passes, so the same bits), instead of its passes.
  /// - Returns: the summed loss, the summed metrics (`DPOMetrics.values` order) and the pairs.
  public func preferenceSums(of examples: [Example], loss: DPOLoss, reference: [Double]? = nil) -> (
    loss: Double, metrics: [Double], pairs: Int
  ) {
    precondition(reference == nil || reference?.count == examples.count, "a reference loss per example")
    let longest = examples.map(\.tokens.count).max() ?? 1
    let batches = preferenceBatches(examples, longest: longest)
    var lossSum = 0.0
    var metrics = [Double](repeating: 0, count: 6)
    var offset = 0
    for batch in batches {
      let policy = sequenceLosses(batch, reference: false, longest: longest)
      defer { offset += policy.count }
      let pairs = DPOLoss.Pair.pairs(
        policyLosses: policy,
        referenceLosses: reference.map { Array($0[offset..<offset + policy.count]) }
          ?? sequenceLosses(batch, reference: true, longest: longest))
      let part = loss.evaluate(pairs, meanOver: pairs.count)
      lossSum += part.loss * Double(pairs.count)
      metrics = zip(metrics, part.metrics.values).map { $0 + $1 * Double(pairs.count) }
    }
    return (lossSum, metrics, examples.count / 2)
  }

  /// The reference's summed loss (−log p) of each sequence of preference pairs (`examples`
  /// as chosen, rejected, …), in their order, in passes as `preferenceSums` takes them, sized
  /// for examples of up to `longest` tokens: the same examples and `longest` give the same
  /// bits whichever rank or run scores them.
  public func referenceLosses(of examples: [Example], longest: Int) -> [Double] {
    preferenceBatches(examples, longest: longest).flatMap {
      sequenceLosses($0, reference: true, longest: longest)
    }
  }

  /// The passes over preference pairs (whole pairs, in order) of examples of up to `longest`
  /// tokens.
  private func preferenceBatches(_ examples: [Example], longest: Int) -> [Batch] {
    precondition(examples.count % 2 == 0, "preference examples come in pairs")
    let pairsPerChunk = max(1, microBatch / 2)
    let budget = 2 * pairsPerChunk * Batch.bucketLength(longest, longest: longest)
    return preferencePasses(examples, pairsPerChunk: pairsPerChunk, budget: budget).map { pass in
      let chunk = Array(examples[pass])
      let tokens = chunk.reduce(0) { $0 + $1.tokens.count }
      return packs
        ? Batch(rows: [chunk], length: Self.packedLength(tokens: tokens, budget: budget), padID: padID)
        : Batch(
          examples: chunk, length: Batch.bucketLength(chunk.map(\.tokens.count).max() ?? 1, longest: longest),
          padID: padID)
    }
  }

  /// The examples of each pass, whole pairs: `pairsPerChunk` pairs, or (packed) consecutive
  /// pairs while their tokens fit in `budget`.
  private func preferencePasses(_ examples: [Example], pairsPerChunk: Int, budget: Int) -> [Range<Int>] {
    let shapes = stride(from: 0, to: examples.count, by: 2).map {
      let pair = examples[$0..<$0 + 2].map(\.tokens.count)
      return (longest: pair.max()!, sequences: 2, tokens: pair.reduce(0, +))
    }
    let passes =
      packs
      ? BatchBalance.tokens.passes(shapes, microBatch: pairsPerChunk, rows: budget, packed: true)
      : BatchBalance.sequences.passes(shapes, microBatch: pairsPerChunk, rows: budget)
    return passes.map { 2 * $0.lowerBound..<2 * $0.upperBound }
  }

  /// A tree node's ancestors, DPO's reference beside the base (nil: the base alone; PiSSA's
  /// frozen term is not one).
  var referenceChain: LoRAAdapter? { adapter?.ancestors(in: frozen) }

  /// Each sequence's summed loss (−log p) of its trained tokens, with the adapter or (the
  /// reference) without, in the batch's example order.
  private func sequenceLosses(_ batch: Batch, reference: Bool, longest: Int) -> [Double] {
    let a = activations(
      length: batch.length, rows: batch.batch, longest: batch.spans == nil ? nil : longest,
      reference: reference)
    a.spans = batch.spans
    model.forward(tokens: batch.tokens, activations: a)
    let sums = model.sequenceLosses(
      targets: batch.targets, activations: a, scratch: lossScratch, chunkRows: chunkRows)
    guard batch.spans != nil else { return sums }
    // One row, its examples in order, padding spans after them.
    return zip(sums, batch.spanExamples).filter { $0.1 >= 0 }.map(\.0)
  }
}
