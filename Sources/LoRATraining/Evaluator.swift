import Foundation
import LoRAFormats
import LoRAKernels
import LoRAModel

/// Scores a model, with or without an adapter, on examples: mean loss over their trained
/// tokens (and so perplexity), and exact-match accuracy of greedy completions.
public final class Evaluator {
  public let model: LlamaModel
  public let adapter: LoRAAdapter?
  /// A tree node's flattened ancestors, applied frozen under `adapter`.
  public let frozen: LoRAAdapter?
  public let microBatch: Int
  /// Score in padding-free passes (`meanLoss`, `preferenceSums`); an adapter with virtual
  /// tokens never does.
  public var paddingFree = true
  var packs: Bool { paddingFree && adapter?.config.virtualTokens == nil }
  let padID: Int32
  let chunkRows = 256
  private let arena = TensorArena()
  private var buffers: [String: LlamaActivations] = [:]
  let lossScratch: Tensor

  public init(
    model: LlamaModel, adapter: LoRAAdapter?, microBatch: Int, padID: Int32, frozen: LoRAAdapter? = nil
  ) {
    precondition(frozen == nil || adapter != nil, "a frozen chain lies under an adapter")
    self.model = model
    self.adapter = adapter
    self.frozen = frozen
    self.microBatch = microBatch
    self.padID = padID
    lossScratch = Tensor(
      zeros: [
        OutputLoss.scratchCount(
          chunkRows: chunkRows, width: model.config.hiddenSize, vocabulary: model.config.vocabularySize)
      ])
  }

  /// Mean loss over every trained token of `examples` (NaN when none is trained) and the count.
  /// Padding-free (as training's passes) unless the adapter has virtual tokens: a pass takes
  /// consecutive examples end to end while they fit in the rows of `microBatch` of the longest.
  public func meanLoss(of examples: [Example]) -> (loss: Double, tokens: Int) {
    if packs { return packedMeanLoss(of: examples) }
    let longest = examples.map(\.tokens.count).max() ?? 1
    _ = activations(length: Batch.bucketLength(longest, longest: longest))  // largest first: the rest fit its arena
    var lossSum = 0.0
    var count = 0
    for start in stride(from: 0, to: examples.count, by: microBatch) {
      let chunk = Array(examples[start..<min(start + microBatch, examples.count)])
      let batch = Batch(
        examples: chunk, length: Batch.bucketLength(chunk.map(\.tokens.count).max() ?? 1, longest: longest),
        padID: padID)
      let a = activations(length: batch.length)
      // A last, smaller chunk is padded with empty rows so the buffers fit.
      let rows = microBatch - batch.batch
      let tokens = batch.tokens + [Int32](repeating: padID, count: rows * batch.length)
      let targets = batch.targets + [Int32](repeating: -1, count: rows * batch.length)
      model.forward(tokens: tokens, activations: a)
      let (sum, n) = model.loss(targets: targets, activations: a, scratch: lossScratch, chunkRows: chunkRows)
      lossSum += sum
      count += n
    }
    return (count > 0 ? lossSum / Double(count) : .nan, count)
  }

  /// One greedy completion judged against its reference.
  public struct Completion: Sendable, Codable {
    public var prompt: String
    public var expected: String
    public var generated: String
    public var correct: Bool
  }

  /// Greedy completions of each example's untrained prefix (the prompt), compared with its
  /// trained rest (the completion, without the end-of-sequence token) after trimming
  /// whitespace. Examples whose every token is trained have no prompt and are skipped.
  public func exactMatch(_ examples: [Example], tokenizer: Tokenizer, maxNewTokens: Int) throws
    -> [Completion]
  {
    var stop = Set<Int32>()
    if let eos = tokenizer.eosID { stop.insert(Int32(eos)) }
    let cases = examples.compactMap { example -> (prompt: [Int32], expected: [Int32])? in
      guard let first = example.trained.firstIndex(of: true), first > 0 else { return nil }
      return (Array(example.tokens[..<first]), Array(example.tokens[first...]).filter { !stop.contains($0) })
    }
    guard let longest = cases.map({ $0.prompt.count }).max() else { return [] }
    let generator = Generator(model: model, capacity: longest + maxNewTokens, adapter: adapter)
    return try cases.map { c in
      var sampler = Sampler()
      var produced: [Int32] = []
      let budget = min(maxNewTokens, c.expected.count + 2)
      _ = try generator.generate(prompt: c.prompt, maxTokens: max(1, budget), sampler: &sampler, stop: stop) {
        token in
        if !stop.contains(token) { produced.append(token) }
        return true
      }
      let expected = tokenizer.decode(c.expected).trimmingCharacters(in: .whitespacesAndNewlines)
      let generated = tokenizer.decode(produced).trimmingCharacters(in: .whitespacesAndNewlines)
      return Completion(
        prompt: tokenizer.decode(c.prompt), expected: expected, generated: generated,
        correct: expected == generated)
    }
  }

  /// `meanLoss` in padding-free passes: one row each, its examples' spans set.
  private func packedMeanLoss(of examples: [Example]) -> (loss: Double, tokens: Int) {
    let longest = examples.map(\.tokens.count).max() ?? 1
    let budget = microBatch * Batch.bucketLength(longest, longest: longest)
    _ = activations(length: budget, rows: 1, longest: longest)  // largest first: the rest fit its arena
    var lossSum = 0.0
    var count = 0
    let shapes = examples.map { (longest: $0.tokens.count, sequences: 1, tokens: $0.tokens.count) }
    for pass in BatchBalance.tokens.passes(shapes, microBatch: microBatch, rows: budget, packed: true) {
      let tokens = examples[pass].reduce(0) { $0 + $1.tokens.count }
      let length = Self.packedLength(tokens: tokens, budget: budget)
      let batch = Batch(rows: [Array(examples[pass])], length: length, padID: padID)
      let a = activations(length: length, rows: 1, longest: longest)
      a.spans = batch.spans
      model.forward(tokens: batch.tokens, activations: a)
      let (sum, n) = model.loss(
        targets: batch.targets, activations: a, scratch: lossScratch, chunkRows: chunkRows)
      lossSum += sum
      count += n
    }
    return (count > 0 ? lossSum / Double(count) : .nan, count)
  }

  /// The row length of a padding-free pass of `tokens`: rounded up to 8, within `budget`
  /// unless one example of the longest alone exceeds it.
  static func packedLength(tokens: Int, budget: Int) -> Int {
    min(max(budget, tokens), Batch.bucketLength(tokens, longest: .max))
  }

  /// Inference buffers for `rows` sequences (`microBatch` when nil) of `length`; with
  /// `longest`, padding-free rows whose sequences are at most that long; `reference`: DPO's
  /// reference pass (the base, with a tree node's ancestors).
  func activations(length: Int, rows: Int? = nil, longest: Int? = nil, reference: Bool = false)
    -> LlamaActivations
  {
    let rows = rows ?? microBatch
    // Padding-free buffers size attention's scratch by `longest`: part of the key.
    let key = "\(rows)@\(length)/\(longest ?? 0)" + (reference ? "-reference" : "")
    if let existing = buffers[key] { return existing }
    arena.reset()
    // The reference: where the adapter started (a tree node's ancestors over the base).
    let adapter = reference ? referenceChain : adapter
    let frozen = reference ? nil : frozen
    let made = LlamaActivations(
      config: model.config, batch: rows, length: length, keepForBackward: false,
      slots: adapter.map { [.init(adapter: $0, sequences: 0..<rows, frozen: frozen)] } ?? [],
      arena: arena, sequenceLength: longest.map { max($0, Batch.bucket) })
    buffers[key] = made
    return made
  }
}
