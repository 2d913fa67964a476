import Dispatch
import Foundation
import LoRACheckpoint
import LoRAComm
import LoRAKernels
import LoRAModel

/// The training loop, top to bottom: for each update, take this rank's slice of the next
/// global batch from the sampler, agree with the other ranks on the batch's trained tokens,
/// run forward and backward over the slice's micro-batches (gradients accumulate in the
/// adapter's one gradient buffer, scaled by 1 / the global batch's trained tokens), sum the
/// gradient buffer over the ranks in one all-reduce (so it is the mean loss's gradient
/// however the batch is split over ranks and micro-batches), clip, step AdamW — the same
/// step on every rank — and report.
///
/// Buffers are allocated once per sequence-length bucket (multiples of 32 tokens up to the
/// longest example) and reused, so an update allocates no activation or gradient memory.
public final class Trainer {
  public let model: LlamaModel
  public let adapter: LoRAAdapter
  public let optimizer: AdamW
  public let options: TrainingOptions
  public let schedule: LearningRateSchedule
  /// The ranks this run spans (one rank: `LocalCommunicator.single()`).
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
  let longest: Int
  /// One arena behind every bucket's buffers: only one bucket is in use at a time.
  private let arena = TensorArena()
  /// Scores the validation set with inference buffers of its own.
  private lazy var evaluator = Evaluator(
    model: model, adapter: adapter, microBatch: options.microBatch, padID: padID)
  /// Set (from any thread, e.g. a SIGTERM handler) to stop after the current update with a
  /// checkpoint; all ranks stop together when any rank's flag is set.
  public let stopRequest: StopRequest
  /// Bytes the gradient all-reduce moves per update, and its time over this process's run.
  public var allreduceBytes: Int { communicator.size > 1 ? adapter.parameterCount * 4 : 0 }
  public private(set) var allreduceSeconds = 0.0
  /// With `separateWaiting`, a barrier before the all-reduce takes the time ranks wait for
  /// the slowest one (load imbalance), so `allreduceSeconds` is the transfer alone.
  public var separateWaiting = false
  public private(set) var waitingSeconds = 0.0
  /// Every this many updates (0: never), check that all ranks hold the same adapter.
  public var checkEvery = 0
  private var buffers: [Int: (LlamaActivations, LlamaGradients)] = [:]
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

  public init(
    model: LlamaModel, adapter: LoRAAdapter, train: [Example], validation: [Example],
    options: TrainingOptions,
    padID: Int32, communicator: any Communicator = LocalCommunicator.single(),
    stopRequest: StopRequest = StopRequest(), allocateBuffers: Bool = true, share: Share = .split
  ) throws {
    self.stopRequest = stopRequest
    if case .whole(let owner) = share {
      guard (0..<communicator.size).contains(owner) else {
        throw DataError.invalidOption("owner rank \(owner) is not in 0..<\(communicator.size)")
      }
    }
    try options.validate(ranks: share == .split ? communicator.size : 1)
    self.share = share
    self.communicator = communicator
    guard !train.isEmpty else { throw DataError.invalidOption("the training set is empty") }
    self.model = model
    self.adapter = adapter
    self.train = train
    self.validation = validation
    self.options = options
    self.padID = padID
    optimizer = AdamW(parameterCount: adapter.parameterCount, options: options.adamW)
    schedule = LearningRateSchedule(
      kind: options.schedule, peak: options.learningRate, warmupSteps: options.warmupSteps,
      totalSteps: options.steps)
    sampler = BatchSampler(
      exampleCount: train.count, globalBatch: options.batchSize, seed: options.seed, shuffle: options.shuffle)
    longest = (train + validation).map(\.tokens.count).max() ?? 1
    guard longest <= model.rope.maxPositions else {
      throw DataError.invalidOption(
        "examples of \(longest) tokens exceed the model's context of \(model.rope.maxPositions); lower max_seq_len"
      )
    }
    // The largest buffers first: every smaller bucket then fits into the same arena blocks.
    // (A fused trainer drives this trainer with buffers of its own.)
    if allocateBuffers { _ = buffersFor(batch: options.microBatch, length: bucket(longest)) }
    // Every rank starts from rank 0's initialisation.
    if communicator.size > 1 { try communicator.broadcast(adapter.parameters, root: 0) }
  }

  /// Floats of activation and gradient memory the run uses.
  public var bufferFloats: Int { arena.capacity }

  /// How `run` ended.
  public enum Ending: Equatable, Sendable {
    /// All the asked-for updates were taken.
    case finished
    /// A stop was requested (on some rank); training stopped after this update, with a
    /// checkpoint when checkpoints were asked for.
    case stopped(step: Int)
  }

  /// Runs updates until `options.steps` (or `until`), reporting each, the validation loss
  /// every `options.evaluateEvery` updates and after the last, and — with `checkpoints`
  /// (given on rank 0 only: only rank 0 writes) — a checkpoint every `checkpoints.every`
  /// updates, after the last, and when a stop was requested.
  ///
  /// - Throws: the first error of an update or of writing a checkpoint; training stops
  ///   there and earlier checkpoints stay as they were.
  @discardableResult
  public func run(
    until last: Int? = nil, checkpoints: Checkpointing? = nil, onEvent: (TrainingEvent) -> Void
  ) throws -> Ending {
    let end = min(last ?? options.steps, options.steps)
    while step < end {
      let (metrics, stop) = try update(stopFlag: stopRequest.isSet)
      onEvent(.step(metrics))
      if validationIsDue {
        let (loss, tokens) = try validationLoss()
        onEvent(.validation(step: step, loss: loss, tokens: tokens))
      }
      if let checkpoints, checkpoints.isDue(after: step, last: end, stopping: stop) {
        onEvent(.checkpoint(try saveCheckpoint(checkpoints)))
      }
      if checkEvery > 0 && step % checkEvery == 0 && communicator.size > 1 {
        try communicator.checkAgreement([
          ("adapter parameters after update \(step)", BaseFingerprint.sha256(adapter.parameters.bytes()))
        ])
      }
      if stop { return .stopped(step: step) }
    }
    return .finished
  }

  /// Whether the validation loss is due after the current update: every
  /// `options.evaluateEvery` updates and after the last, when there is validation data.
  public var validationIsDue: Bool {
    !validation.isEmpty
      && ((options.evaluateEvery > 0 && step % options.evaluateEvery == 0) || step == options.steps)
  }

  /// One update on the next global batch.
  public func update() throws -> StepMetrics { try update(stopFlag: false).metrics }

  /// One update; `stopFlag` is this rank's stop request, and `stop` whether any rank asked.
  func update(stopFlag: Bool) throws -> (metrics: StepMetrics, stop: Bool) {
    let started = DispatchTime.now().uptimeNanoseconds
    let ranks = communicator.size
    let examples = try currentSlice()
    // The global batch's trained tokens scale every rank's gradients.
    var counts = Self.counts(examples)
    if ranks > 1 { try communicator.allreduce(&counts, .sum) }
    let trainedTotal = Int(counts[0])
    adapter.gradients.zero()
    var lossSum = 0.0
    for (micro, chunk) in microBatches(examples).enumerated() {
      let batch = Batch(examples: chunk, length: bucket(chunk.map(\.tokens.count).max() ?? 1), padID: padID)
      let (activations, gradients) = buffersFor(batch: batch.batch, length: batch.length)
      activations.dropoutSeed = dropoutSeed(micro: micro)
      model.forward(tokens: batch.tokens, activations: activations)
      let (sum, _) = model.backward(
        targets: batch.targets, activations: activations, gradients: gradients,
        gradientScale: 1 / Float(max(trainedTotal, 1)))
      lossSum += sum
    }
    // One fused all-reduce of every A and B gradient; with the loss and the stop flags.
    var totals = [lossSum, stopFlag ? 1 : 0]
    if ranks > 1 {
      try allreduceGradients(adapter.gradients)
      try communicator.allreduce(&totals, .sum)
    }
    let metrics = finishUpdate(
      lossSum: totals[0], trainedTotal: trainedTotal, tokens: Int(counts[1]),
      seconds: Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9)
    return (metrics, totals[1] > 0)
  }

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

  /// This rank's examples of the current update's global batch.
  func currentSlice() throws -> [Example] {
    switch share {
    case .split:
      return try sampler.indices(step: step, rank: communicator.rank, ranks: communicator.size).map {
        train[$0]
      }
    case .whole(let owner):
      guard owner == communicator.rank else { return [] }
      return try sampler.indices(step: step, rank: 0, ranks: 1).map { train[$0] }
    }
  }

  /// [trained tokens, tokens] of `examples`.
  static func counts(_ examples: [Example]) -> [Double] {
    [
      Double(examples.reduce(0) { $0 + $1.trainedCount }),
      Double(examples.reduce(0) { $0 + $1.tokens.count }),
    ]
  }

  /// `examples` in micro-batches of `options.microBatch`.
  func microBatches(_ examples: [Example]) -> [[Example]] {
    stride(from: 0, to: examples.count, by: options.microBatch).map {
      Array(examples[$0..<min($0 + options.microBatch, examples.count)])
    }
  }

  /// The dropout seed of micro-batch `micro` of this rank's slice. Micro-batches are
  /// numbered globally, so a micro-batch's masks do not depend on how the batch is split
  /// over ranks, nor on whether it is trained alone or fused with other adapters.
  func dropoutSeed(micro: Int) -> UInt64 {
    let firstMicro =
      share == .split ? communicator.rank * (options.batchSize / communicator.size) / options.microBatch : 0
    return options.seed &+ UInt64(step) &* 1_000_003 &+ UInt64(firstMicro + micro) &* 7919
  }

  /// The gradient all-reduce (sum, in place), timed; with `separateWaiting`, after a barrier.
  func allreduceGradients(_ gradients: Tensor) throws {
    if separateWaiting {
      let waitStarted = DispatchTime.now().uptimeNanoseconds
      try communicator.barrier()
      waitingSeconds += Double(DispatchTime.now().uptimeNanoseconds - waitStarted) / 1e9
    }
    let reduceStarted = DispatchTime.now().uptimeNanoseconds
    try communicator.allreduce(gradients, .sum)
    allreduceSeconds += Double(DispatchTime.now().uptimeNanoseconds - reduceStarted) / 1e9
  }

  /// Clips the (all-reduced) gradients, steps AdamW, advances the counters and reports.
  func finishUpdate(lossSum: Double, trainedTotal: Int, tokens: Int, seconds: Double) -> StepMetrics {
    let norm = AdamW.clipGradientNorm(adapter.gradients, maxNorm: options.maxGradientNorm)
    let rate = schedule.rate(step: step)
    optimizer.update(parameters: adapter.parameters, gradients: adapter.gradients, lr: rate)
    step += 1
    tokensSeen += tokens
    trainedTokensSeen += trainedTotal
    let loss = lossSum / Double(max(trainedTotal, 1))
    lastLoss = loss
    secondsSoFar += seconds
    updatesTimed += 1
    return StepMetrics(
      step: step, totalSteps: options.steps, loss: loss, learningRate: rate,
      gradientNorm: norm, tokens: tokens, trainedTokens: trainedTotal, seconds: seconds,
      tokensPerSecond: Double(tokens) / seconds, epoch: sampler.epoch(step: step),
      etaSeconds: secondsSoFar / Double(updatesTimed) * Double(options.steps - step))
  }

  /// Mean loss over the validation set (no gradients), and its trained-token count; each
  /// rank scores every size-th example and the sums are combined.
  public func validationLoss() throws -> (loss: Double, tokens: Int) {
    let ranks = communicator.size
    let mine =
      ranks == 1
      ? validation : validation.enumerated().filter { $0.offset % ranks == communicator.rank }.map(\.element)
    let (loss, tokens) = mine.isEmpty ? (0, 0) : evaluator.meanLoss(of: mine)
    var sums = [tokens > 0 ? loss * Double(tokens) : 0, Double(tokens)]
    if ranks > 1 { try communicator.allreduce(&sums, .sum) }
    return (sums[1] > 0 ? sums[0] / sums[1] : .nan, Int(sums[1]))
  }

  func bucket(_ length: Int) -> Int { Batch.bucketLength(length, longest: longest) }

  private func buffersFor(batch: Int, length: Int) -> (LlamaActivations, LlamaGradients) {
    let key = batch << 32 | length
    if let existing = buffers[key] { return existing }
    arena.reset()
    let made = (
      LlamaActivations(
        config: model.config, batch: batch, length: length, keepForBackward: true, adapter: adapter,
        arena: arena, checkpointed: options.checkpointActivations),
      LlamaGradients(
        config: model.config, batch: batch, length: length, maxRank: adapter.modules.map(\.rank).max() ?? 1,
        arena: arena)
    )
    buffers[key] = made
    return made
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
