import Foundation
import LoRAComm
import LoRAKernels
import LoRAModel

/// What one adapter carries through training, whoever drives its updates: its data and
/// sampler, options and schedule, AdamW state, counters, which part of each global batch
/// this rank trains (`share`), and finishing an update (clip, step, count, report).
///
/// A `FusedTrainer` drives one or several of these through shared passes of the frozen base;
/// a `Trainer` is a fused group of one. Nothing here allocates activation buffers.
public final class AdapterState {
  public let model: LlamaModel
  public let adapter: LoRAAdapter
  public let optimizer: AdamW
  public let options: TrainingOptions
  public let schedule: LearningRateSchedule
  /// The ranks this adapter trains on (one rank: `LocalCommunicator.single()`).
  public let communicator: any Communicator
  let train: [Example]
  /// The training examples (route signatures sample their prompts).
  public var trainingExamples: [Example] { train }
  let validation: [Example]
  let sampler: BatchSampler
  /// Which part of each global batch this rank trains on. A fused group may move a member
  /// between updates: the result does not depend on it (see `Share`).
  public internal(set) var share: Share
  let padID: Int32
  /// The work of a sequence, for `options.balance`.
  let sequenceCost: SequenceCost
  /// The longest example (training or validation), in tokens.
  let longest: Int
  /// AdamW's groups: LoRA+'s B ranges at the ratio, PiSSA's frozen term at 0.
  let optimizerGroups: [(range: Range<Int>, factor: Double)]
  /// A frozen adapter applied unmerged under `adapter` in training and validation: a tree
  /// node's ancestors, flattened into one (set before the first update), or PiSSA's initial
  /// term −s·B₀·A₀ (`LoRAAdapter.initial`, the default).
  public var frozen: LoRAAdapter?
  /// DPO's metrics on the validation pairs at the latest `validationLoss()` (nil for SFT).
  public internal(set) var lastPreferenceValidation: DPOMetrics?
  /// DPO: the reference's summed loss of every training sequence, in the data's order, once
  /// `scoreReference()` ran (`AdapterState+Reference`).
  public internal(set) var referenceTable: [Double]?
  /// DPO: the reference's losses of this rank's validation pairs, scored at the first
  /// validation (`validationReference(_:)`).
  var validationReferenceLosses: [Double]?
  /// Scores the validation set with inference buffers of its own.
  lazy var evaluator = Evaluator(
    model: model, adapter: adapter, microBatch: options.microBatch, padID: padID, frozen: frozen)
  /// Updates taken so far (counting those before a resume).
  public internal(set) var step = 0
  /// Tokens of all updates so far, and how many of them were trained on.
  public internal(set) var tokensSeen = 0
  public internal(set) var trainedTokensSeen = 0
  /// The loss of the latest update.
  public internal(set) var lastLoss: Double?
  /// Time and count of the updates this process ran (for the ETA).
  private var secondsSoFar = 0.0
  private var updatesTimed = 0

  /// Which part of each global batch a rank trains on.
  public enum Share: Equatable, Sendable {
    /// Every rank its contiguous slice (the batch divides into whole micro-batches per rank).
    case split
    /// All of it on rank `owner`, none on the others: a member of a fused group whose batch
    /// does not split over the group's ranks. Its data order, micro-batches and dropout
    /// masks are those of the same adapter trained on one rank — and, when the batch does
    /// split, those of `split` too (micro-batches are numbered over the whole batch).
    case whole(owner: Int)
  }

  /// - Throws: `DataError.invalidOption` for an empty training set, options that do not fit
  ///   `share` on the communicator's ranks, or examples longer than the model's context.
  public init(
    model: LlamaModel, adapter: LoRAAdapter, train: [Example], validation: [Example],
    options: TrainingOptions,
    padID: Int32, communicator: any Communicator = LocalCommunicator.single(), share: Share = .split
  ) throws {
    if case .whole(let owner) = share {
      guard (0..<communicator.size).contains(owner) else {
        throw DataError.invalidOption("owner rank \(owner) is not in 0..<\(communicator.size)")
      }
    }
    try options.validate(ranks: share == .split ? communicator.size : 1)
    guard !train.isEmpty else { throw DataError.invalidOption("the training set is empty") }
    // DoRA magnitudes never set (all zero would zero every adapted layer): PEFT's start.
    if adapter.modules.contains(where: { $0.magnitude != nil })
      && adapter.modules.allSatisfy({ $0.magnitude?.values.allSatisfy { $0 == 0 } ?? true })
    {
      model.resetMagnitudes(of: adapter)
    }
    // PiSSA never initialised from the base (its frozen term all zero): PEFT's start.
    if let initial = adapter.initial, initial.parameters.values.allSatisfy({ $0 == 0 }) {
      try model.initializePiSSA(adapter, seed: options.seed)
    }
    if options.dpo != nil && (train.count % 2 != 0 || validation.count % 2 != 0) {
      throw DataError.invalidOption("DPO examples come in pairs (chosen, rejected); got an odd count")
    }
    self.share = share
    self.communicator = communicator
    self.model = model
    self.adapter = adapter
    self.train = train
    self.validation = validation
    self.options = options
    self.padID = padID
    sequenceCost = SequenceCost(config: model.config)
    optimizer = AdamW(parameterCount: adapter.parameterCount, options: options.adamW)
    optimizerGroups =
      (options.loraPlusRatio == 1 ? [] : adapter.bRanges.map { ($0, options.loraPlusRatio) })
      + (adapter.frozenRange.map { [($0, 0)] } ?? [])
    frozen = adapter.initial
    schedule = LearningRateSchedule(
      kind: options.schedule, peak: options.learningRate, warmupSteps: options.warmupSteps,
      totalSteps: options.steps)
    sampler = BatchSampler(
      exampleCount: options.dpo == nil ? train.count : train.count / 2, globalBatch: options.batchSize,
      seed: options.seed, shuffle: options.shuffle)
    longest = (train + validation).map(\.tokens.count).max() ?? 1
    guard longest <= model.rope.maxPositions else {
      throw DataError.invalidOption(
        "examples of \(longest) tokens exceed the model's context of \(model.rope.maxPositions); lower max_seq_len"
      )
    }
  }

  /// Whether the validation loss is due after the current update: every
  /// `options.evaluateEvery` updates and after the last, when there is validation data.
  public var validationIsDue: Bool {
    !validation.isEmpty
      && ((options.evaluateEvery > 0 && step % options.evaluateEvery == 0) || step == options.steps)
  }

  /// Whether there is validation data.
  public var hasValidation: Bool { !validation.isEmpty }

  /// An example of an update's batch, its place there (sequence order over the whole batch;
  /// with DPO, pair p's chosen at 2p, its rejected at 2p + 1) and its index in the training
  /// data (what `referenceTable` is indexed by).
  typealias Placed = (position: Int, index: Int, example: Example)

  /// This rank's examples of the current update's global batch, in the order its
  /// micro-batches take them: the units (sequences, or DPO pairs, never split) that
  /// `options.balance` gives this rank of the ranks sharing the batch.
  func currentSlice() throws -> [Placed] {
    let (rank, ranks): (Int, Int)
    switch share {
    case .split: (rank, ranks) = (communicator.rank, communicator.size)
    case .whole(let owner):
      guard owner == communicator.rank else { return [] }
      (rank, ranks) = (0, 1)
    }
    let units = try sampler.indices(step: step, rank: 0, ranks: 1)
    let size = options.dpo == nil ? 1 : 2
    let examples = units.map { unit in (0..<size).map { train[size * unit + $0] } }
    let shapes = examples.map {
      BatchBalance.Unit(lengths: $0.map(\.tokens.count), trained: $0.reduce(0) { $0 + $1.trainedCount })
    }
    let assignment = options.balance.assign(
      units: shapes, ranks: ranks, rows: passRows, extra: virtualRows, packed: packs, longest: longest,
      cost: sequenceCost)
    return assignment[rank].flatMap { unit in
      examples[unit].enumerated().map {
        (size * unit + $0.offset, size * units[unit] + $0.offset, $0.element)
      }
    }
  }

  /// [what the loss is averaged over, tokens] of `examples`: trained tokens, or with DPO pairs.
  func counts(_ examples: [Placed]) -> [Double] {
    [
      options.dpo == nil
        ? Double(examples.reduce(0) { $0 + $1.example.trainedCount }) : Double(examples.count / 2),
      Double(examples.reduce(0) { $0 + $1.example.tokens.count }),
    ]
  }

  /// The padded rows one pass may hold: `options.microBatch` sequences (with DPO, pairs) of
  /// the run's longest example.
  var passRows: Int {
    (options.dpo == nil ? 1 : 2) * options.microBatch
      * (Batch.bucketLength(longest, longest: longest) + virtualRows)
  }

  /// DPO's reference beside the base: a tree node's ancestors (the model the node starts
  /// from); nil for the base alone, PiSSA included (its frozen term cancels its start).
  var referenceChain: LoRAAdapter? { adapter.ancestors(in: frozen) }

  /// Whether this adapter's passes are padding-free: `options.paddingFree`, unless its
  /// adapter has virtual tokens (which pass padded, one sequence a row).
  var packs: Bool { options.paddingFree && adapter.config.virtualTokens == nil }

  /// The rows (prompt tuning) or keys (prefix tuning) virtual tokens add to each sequence.
  var virtualRows: Int { adapter.config.virtualTokens?.tokens ?? 0 }

  /// `examples` (this rank's, in running order) in passes (`BatchBalance.passes`): with
  /// `balance: sequences`, `options.microBatch` units each; with `tokens`, as many units as
  /// fit in `passRows` padded rows (tokens when it `packs`). A DPO pair is never split.
  func microBatches(_ examples: [Placed]) -> [[Placed]] {
    let size = options.dpo == nil ? 1 : 2
    let units = stride(from: 0, to: examples.count, by: size).map {
      examples[$0..<min($0 + size, examples.count)]
    }
    let shapes = units.map {
      (
        longest: $0.map(\.example.tokens.count).max() ?? 0, sequences: $0.count,
        tokens: $0.reduce(0) { $0 + $1.example.tokens.count }
      )
    }
    return options.balance.passes(
      shapes, microBatch: options.microBatch, rows: passRows, extra: virtualRows, packed: packs,
      longest: longest
    )
    .map {
      pass in
      units[pass].flatMap { $0 }
    }
  }

  /// The dropout seed of the current update. Each sequence's masks also take its place in
  /// the batch (`LlamaActivations.sequenceNumbers`), so they do not depend on how the batch
  /// is split over ranks and micro-batches, nor on whether it is trained alone or fused.
  func dropoutSeed() -> UInt64 {
    options.seed &+ UInt64(step) &* 1_000_003
  }

  /// Clips the (all-reduced) gradients, steps AdamW, advances the counters and reports.
  func finishUpdate(
    lossSum: Double, trainedTotal: Int, tokens: Int, seconds: Double, preference: DPOMetrics? = nil
  ) -> StepMetrics {
    let norm = AdamW.clipGradientNorm(adapter.gradients, maxNorm: options.maxGradientNorm)
    let rate = schedule.rate(step: step)
    optimizer.update(
      parameters: adapter.parameters, gradients: adapter.gradients, lr: rate, groups: optimizerGroups)
    step += 1
    tokensSeen += tokens
    trainedTokensSeen += trainedTotal
    let loss = lossSum / Double(max(trainedTotal, 1))
    lastLoss = loss
    secondsSoFar += seconds
    updatesTimed += 1
    var metrics = StepMetrics(
      step: step, totalSteps: options.steps, loss: loss, learningRate: rate,
      gradientNorm: norm, tokens: tokens, trainedTokens: trainedTotal, seconds: seconds,
      tokensPerSecond: Double(tokens) / seconds, epoch: sampler.epoch(step: step),
      etaSeconds: secondsSoFar / Double(updatesTimed) * Double(options.steps - step))
    metrics.preference = preference
    return metrics
  }

  /// Mean loss over the validation set (no gradients), and its trained-token count (with
  /// DPO: the mean DPO loss and the pair count); each rank scores every size-th example (pair)
  /// and the sums are combined.
  public func validationLoss() throws -> (loss: Double, tokens: Int) {
    if let dpo = options.dpo {
      let (loss, metrics) = try preferenceValidation(dpo)
      lastPreferenceValidation = metrics
      return loss
    }
    let ranks = communicator.size
    let mine =
      ranks == 1
      ? validation : validation.enumerated().filter { $0.offset % ranks == communicator.rank }.map(\.element)
    let (loss, tokens) = mine.isEmpty ? (0, 0) : evaluator.meanLoss(of: mine)
    var sums = [tokens > 0 ? loss * Double(tokens) : 0, Double(tokens)]
    if ranks > 1 { try communicator.allreduce(&sums, .sum) }
    return (sums[1] > 0 ? sums[0] / sums[1] : .nan, Int(sums[1]))
  }
}

extension AdapterState {
  /// DPO on the validation pairs: the mean loss and pair count, and the mean metrics.
  public func preferenceValidation(_ dpo: DPOLoss) throws -> (
    loss: (loss: Double, tokens: Int), metrics: DPOMetrics
  ) {
    let ranks = communicator.size
    let pairs = validation.count / 2
    let mine = (0..<pairs).filter { $0 % ranks == communicator.rank }.flatMap {
      [validation[2 * $0], validation[2 * $0 + 1]]
    }
    let part =
      mine.isEmpty
      ? (loss: 0, metrics: [Double](repeating: 0, count: 6), pairs: 0)
      : evaluator.preferenceSums(of: mine, loss: dpo, reference: validationReference(mine))
    var sums = [part.loss, Double(part.pairs)] + part.metrics
    if ranks > 1 { try communicator.allreduce(&sums, .sum) }
    var metrics = DPOMetrics()
    metrics.values = sums[2...].map { sums[1] > 0 ? $0 / sums[1] : .nan }
    return ((sums[1] > 0 ? sums[0] / sums[1] : .nan, Int(sums[1])), metrics)
  }
}

/// A flag one thread sets and the training loop reads.
public final class StopRequest: @unchecked Sendable {
  private let lock = NSLock()
  private var set = false
  public init() {}
  public func request() { lock.withLock { set = true } }
  public var isSet: Bool { lock.withLock { set } }
}
