import Dispatch
import LoRAKernels
import LoRAModel

/// The training loop, top to bottom: for each update, take the next global batch from the
/// sampler, run forward and backward over its micro-batches (gradients accumulate in the
/// adapter's one gradient buffer, scaled by 1 / the batch's trained tokens, so the result is
/// the mean loss's gradient however the batch is split), clip, step AdamW, report.
///
/// Buffers are allocated once per sequence-length bucket (multiples of 32 tokens up to the
/// longest example) and reused, so an update allocates no activation or gradient memory.
public final class Trainer {
  public let model: LlamaModel
  public let adapter: LoRAAdapter
  public let optimizer: AdamW
  public let options: TrainingOptions
  public let schedule: LearningRateSchedule
  let train: [Example]
  let validation: [Example]
  let sampler: BatchSampler
  let padID: Int32
  let longest: Int
  /// One arena behind every bucket's buffers: only one bucket is in use at a time.
  private let arena = TensorArena()
  /// Scores the validation set with inference buffers of its own.
  private lazy var evaluator = Evaluator(
    model: model, adapter: adapter, microBatch: options.microBatch, padID: padID)
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
    padID: Int32
  ) throws {
    try options.validate()
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
    _ = buffersFor(batch: options.microBatch, length: bucket(longest))
  }

  /// Floats of activation and gradient memory the run uses.
  public var bufferFloats: Int { arena.capacity }

  /// Runs updates until `options.steps` (or `until`), reporting each, the validation loss
  /// every `options.evaluateEvery` updates and after the last, and — with `checkpoints` —
  /// a checkpoint every `checkpoints.every` updates and after the last.
  ///
  /// - Throws: the first error of an update or of writing a checkpoint; training stops
  ///   there and earlier checkpoints stay as they were.
  public func run(
    until last: Int? = nil, checkpoints: Checkpointing? = nil, onEvent: (TrainingEvent) -> Void
  ) throws {
    let end = min(last ?? options.steps, options.steps)
    while step < end {
      onEvent(.step(try update()))
      let due = options.evaluateEvery > 0 && step % options.evaluateEvery == 0
      if !validation.isEmpty && (due || step == options.steps) {
        let (loss, tokens) = validationLoss()
        onEvent(.validation(step: step, loss: loss, tokens: tokens))
      }
      if let checkpoints, (checkpoints.every > 0 && step % checkpoints.every == 0) || step == end {
        onEvent(.checkpoint(try saveCheckpoint(checkpoints)))
      }
    }
  }

  /// One update on the next global batch.
  public func update() throws -> StepMetrics {
    let started = DispatchTime.now().uptimeNanoseconds
    let examples = try sampler.indices(step: step, rank: 0, ranks: 1).map { train[$0] }
    let trainedTotal = examples.reduce(0) { $0 + $1.trainedCount }
    adapter.gradients.zero()
    var lossSum = 0.0
    var tokens = 0
    for (micro, start) in stride(from: 0, to: examples.count, by: options.microBatch).enumerated() {
      let chunk = Array(examples[start..<min(start + options.microBatch, examples.count)])
      tokens += chunk.reduce(0) { $0 + $1.tokens.count }
      let batch = Batch(examples: chunk, length: bucket(chunk.map(\.tokens.count).max() ?? 1), padID: padID)
      let (activations, gradients) = buffersFor(batch: batch.batch, length: batch.length)
      activations.dropoutSeed = options.seed &+ UInt64(step) &* 1_000_003 &+ UInt64(micro) &* 7919
      model.forward(tokens: batch.tokens, activations: activations)
      let (sum, _) = model.backward(
        targets: batch.targets, activations: activations, gradients: gradients,
        gradientScale: 1 / Float(max(trainedTotal, 1)))
      lossSum += sum
    }
    let norm = AdamW.clipGradientNorm(adapter.gradients, maxNorm: options.maxGradientNorm)
    let rate = schedule.rate(step: step)
    optimizer.update(parameters: adapter.parameters, gradients: adapter.gradients, lr: rate)
    step += 1
    tokensSeen += tokens
    trainedTokensSeen += trainedTotal
    let loss = lossSum / Double(max(trainedTotal, 1))
    lastLoss = loss
    let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
    secondsSoFar += seconds
    updatesTimed += 1
    return StepMetrics(
      step: step, totalSteps: options.steps, loss: loss, learningRate: rate,
      gradientNorm: norm, tokens: tokens, trainedTokens: trainedTotal, seconds: seconds,
      tokensPerSecond: Double(tokens) / seconds, epoch: sampler.epoch(step: step),
      etaSeconds: secondsSoFar / Double(updatesTimed) * Double(options.steps - step))
  }

  /// Mean loss over the validation set (no gradients), and its trained-token count.
  public func validationLoss() -> (loss: Double, tokens: Int) {
    evaluator.meanLoss(of: validation)
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
