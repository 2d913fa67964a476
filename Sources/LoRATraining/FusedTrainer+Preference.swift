import LoRAKernels
import LoRAModel

/// What the DPO slots of one fused pass report from inside the backward: each slot's part of
/// its loss and metrics (by slot index).
final class PreferenceParts {
  var values: [Int: DPOLoss.Evaluation] = [:]
}

extension FusedTrainer {
  /// One slot of a stacked pass: its member, its micro-batch in running order (DPO: chosen,
  /// rejected, …) and the rows `layout` gave it (one sequence a row, or packed).
  struct PassSlot {
    var member: Int
    var pass: [AdapterState.Placed]
    var rows: [[AdapterState.Placed]]
  }

  /// For the DPO members among one pass's slots (in stack order, laid out in `batch`): the
  /// reference log-probabilities, from the member's precomputed table or else a pass over
  /// the member's own rows from where it started (the base alone, or a tree node's ancestors
  /// over it; no backward; padding-free when the member is), and the sequence weights the
  /// backward calls with the policy's, which evaluate the DPO loss as a part of the mean over
  /// the member's global batch and record it in `parts`. Packed rows hold the pairs in another
  /// order, with padding spans between: losses and weights go through each sequence's place
  /// in the micro-batch.
  func preferenceWeights(_ slots: [PassSlot], batch: Batch, length: Int, gradients: LlamaGradients)
    throws -> (weights: [Int: ([Double]) -> [Float]], parts: PreferenceParts)
  {
    let parts = PreferenceParts()
    var weights: [Int: ([Double]) -> [Float]] = [:]
    var (firstRow, firstExample) = (0, 0)
    for (slot, s) in slots.enumerated() {
      let laid = s.rows.flatMap { $0 }
      defer { (firstRow, firstExample) = (firstRow + s.rows.count, firstExample + laid.count) }
      guard let loss = trainers[s.member].options.dpo else { continue }
      let place = Dictionary(uniqueKeysWithValues: s.pass.enumerated().map { ($1.position, $0) })
      let policyOrder = Self.places(
        batch, rows: firstRow..<firstRow + s.rows.count, firstExample: firstExample, laid: laid, place: place)
      let referenceLosses =
        trainers[s.member].referenceLosses(of: s.pass)
        ?? referencePass(s, length: length, laid: laid, place: place, gradients: gradients)
      let meanOver = trainers[s.member].options.batchSize
      weights[slot] = { sums in
        let result = loss.evaluate(
          DPOLoss.Pair.pairs(
            policyLosses: Self.gather(sums, places: policyOrder, count: s.pass.count),
            referenceLosses: referenceLosses),
          meanOver: meanOver)
        parts.values[slot] = result
        let perSequence = result.sequenceWeights
        return policyOrder.map { $0 < 0 ? 0 : perSequence[$0] }
      }
    }
    return (weights, parts)
  }

  /// The reference's summed losses of slot `s`'s sequences (in `s.pass` order) from a pass
  /// of its own over the same rows (the base alone, or a tree node's ancestors; no backward).
  private func referencePass(
    _ s: PassSlot, length: Int, laid: [AdapterState.Placed], place: [Int: Int], gradients: LlamaGradients
  ) -> [Double] {
    let packs = trainers[s.member].packs
    let own =
      packs
      ? Batch(rows: s.rows.map { $0.map(\.example) }, length: length, padID: padID)
      : Batch(examples: s.pass.map(\.example), length: length, padID: padID)
    let reference = referenceActivations(
      sequences: own.batch, length: length, packed: packs, chain: trainers[s.member].referenceChain)
    reference.spans = own.spans
    model.forward(tokens: own.tokens, activations: reference)
    return Self.gather(
      model.sequenceLosses(
        targets: own.targets, activations: reference, scratch: gradients.lossScratch,
        chunkRows: gradients.chunkRows),
      places: packs
        ? Self.places(own, rows: 0..<own.batch, firstExample: 0, laid: laid, place: place)
        : Array(s.pass.indices), count: s.pass.count)
  }

  /// The place in its micro-batch (`place`, by position) of each sequence of the slot on
  /// `rows` of `batch`, in the order the model sums them (`LlamaActivations.sequenceRows`):
  /// per row-sequence, or per span when packed (−1 for padding). `laid`: the slot's examples
  /// in row order, the first of them example `firstExample` of the batch.
  static func places(
    _ batch: Batch, rows: Range<Int>, firstExample: Int, laid: [AdapterState.Placed], place: [Int: Int]
  ) -> [Int] {
    guard let spans = batch.spans else { return laid.map { place[$0.position]! } }
    return spans.indices.filter { rows.contains(spans[$0].row) }.map { s in
      let example = batch.spanExamples[s]
      return example < 0 ? -1 : place[laid[example - firstExample].position]!
    }
  }

  /// `values` (one per sequence in the model's order) in micro-batch order.
  static func gather(_ values: [Double], places: [Int], count: Int) -> [Double] {
    var gathered = [Double](repeating: 0, count: count)
    for (value, place) in zip(values, places) where place >= 0 { gathered[place] = value }
    return gathered
  }

  /// Inference buffers of the base (with a tree node's `chain` of ancestors applied) for
  /// `sequences` rows of `length` tokens (kept; not from the arena, so they never overlap the
  /// training buffers); `packed`: attention's scratch for the run's longest sequence.
  private func referenceActivations(sequences: Int, length: Int, packed: Bool, chain: LoRAAdapter?)
    -> LlamaActivations
  {
    let owner = chain.map { "\(ObjectIdentifier($0))" } ?? "base"
    let key = "\(sequences)@\(length)\(packed ? "p" : "")-\(owner)"
    if let existing = referenceBuffers[key] { return existing }
    let made = LlamaActivations(
      config: model.config, batch: sequences, length: length, keepForBackward: false,
      slots: chain.map { [.init(adapter: $0, sequences: 0..<sequences)] } ?? [],
      sequenceLength: packed ? max(longest, Batch.bucket) : nil)
    referenceBuffers[key] = made
    return made
  }
}
