/// How a run trains: batch geometry, optimizer, schedule, evaluation cadence.
public struct TrainingOptions: Codable, Equatable, Sendable {
  /// Updates to take.
  public var steps: Int
  /// Sequences per update, over all ranks (the global batch).
  public var batchSize: Int
  /// Sequences per forward/backward pass on one rank; the global batch is accumulated over
  /// batchSize / (microBatch × ranks) passes.
  public var microBatch: Int
  public var learningRate: Double
  public var schedule: LearningRateSchedule.Kind
  public var warmupSteps: Int
  public var adamW: AdamW.Options
  /// LoRA+: every B's learning rate is this many times the rest's (1: plain LoRA).
  public var loraPlusRatio: Double
  /// DPO instead of the next-token loss: the examples are preference pairs (chosen then
  /// rejected), and `batchSize` and `microBatch` count pairs. nil: next-token loss.
  public var dpo: DPOLoss?
  /// Gradient-norm clipping (0: off).
  public var maxGradientNorm: Double
  public var seed: UInt64
  /// Validation loss every this many updates (0: only at the end).
  public var evaluateEvery: Int
  public var shuffle: Bool
  /// Keep only each layer's input and recompute the rest during the backward pass.
  public var checkpointActivations: Bool
  /// How the global batch is divided over ranks and micro-batches (`BatchBalance`).
  public var balance: BatchBalance
  /// Padding-free passes: each pass's sequences end to end in shared rows, each attending
  /// only to itself (next-token loss and DPO pairs; adapters with virtual tokens pass padded).
  public var paddingFree: Bool
  /// DPO: score the reference of every training pair once before the first update and reuse
  /// it every epoch, instead of a reference pass in every update (TRL's
  /// `precompute_ref_log_probs`). nil: when the run covers at least two epochs of pairs.
  public var precomputeReference: Bool?

  public init(
    steps: Int = 100, batchSize: Int = 8, microBatch: Int = 4, learningRate: Double = 2e-4,
    schedule: LearningRateSchedule.Kind = .cosine, warmupSteps: Int = 0, adamW: AdamW.Options = .init(),
    maxGradientNorm: Double = 1, seed: UInt64 = 0, evaluateEvery: Int = 0, shuffle: Bool = true,
    checkpointActivations: Bool = false, loraPlusRatio: Double = 1, dpo: DPOLoss? = nil,
    balance: BatchBalance = .tokens, paddingFree: Bool = false, precomputeReference: Bool? = nil
  ) {
    self.precomputeReference = precomputeReference
    self.balance = balance
    self.paddingFree = paddingFree
    self.loraPlusRatio = loraPlusRatio
    self.dpo = dpo
    self.checkpointActivations = checkpointActivations
    self.steps = steps
    self.batchSize = batchSize
    self.microBatch = microBatch
    self.learningRate = learningRate
    self.schedule = schedule
    self.warmupSteps = warmupSteps
    self.adamW = adamW
    self.maxGradientNorm = maxGradientNorm
    self.seed = seed
    self.evaluateEvery = evaluateEvery
    self.shuffle = shuffle
  }

  /// Checks every value, naming the option and what was expected.
  public func validate(ranks: Int = 1) throws {
    func require(_ ok: Bool, _ message: String) throws { if !ok { throw DataError.invalidOption(message) } }
    try require(steps >= 1, "steps must be at least 1, got \(steps)")
    try require(batchSize >= 1, "batch size must be at least 1, got \(batchSize)")
    try require(microBatch >= 1, "micro-batch must be at least 1, got \(microBatch)")
    try require(
      batchSize % (microBatch * ranks) == 0,
      "batch size \(batchSize) must be a multiple of micro-batch \(microBatch) × \(ranks) rank(s)")
    try require(
      learningRate.isFinite && learningRate > 0,
      "learning rate must be a positive number, got \(learningRate)")
    try require(
      loraPlusRatio.isFinite && loraPlusRatio > 0,
      "LoRA+ learning rate ratio must be positive, got \(loraPlusRatio)")
    do throws(DataError) { try dpo?.validate() } catch { throw error }
    try require(warmupSteps >= 0, "warmup steps must be 0 or more, got \(warmupSteps)")
    try require(
      adamW.weightDecay.isFinite && adamW.weightDecay >= 0,
      "weight decay must be 0 or more, got \(adamW.weightDecay)")
    try require(
      adamW.beta1 >= 0 && adamW.beta1 < 1 && adamW.beta2 >= 0 && adamW.beta2 < 1,
      "AdamW betas must be in [0, 1)")
    try require(adamW.eps.isFinite && adamW.eps > 0, "AdamW eps must be positive, got \(adamW.eps)")
    try require(
      maxGradientNorm.isFinite && maxGradientNorm >= 0,
      "max gradient norm must be 0 or more, got \(maxGradientNorm)")
    try require(evaluateEvery >= 0, "evaluate-every must be 0 or more, got \(evaluateEvery)")
  }
}
