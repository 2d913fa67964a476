import LoRACheckpoint
import LoRAComm
import LoRAKernels
import LoRAModel

/// One adapter's training: a fused group of one (`FusedTrainer`), so it runs the very loop
/// and update that fused training runs. For each update: take this rank's slice of the next
/// global batch from the sampler, agree with the other ranks on the batch's trained tokens,
/// run forward and backward over the slice's micro-batches (gradients accumulate in the
/// adapter's one gradient buffer, scaled by 1 / the global batch's trained tokens), sum the
/// gradient buffer over the ranks in one all-reduce (so it is the mean loss's gradient
/// however the batch is split over ranks and micro-batches), clip, step AdamW — the same
/// step on every rank — and report.
///
/// Buffers are allocated once per sequence-length bucket (multiples of `Batch.bucket` tokens up to the
/// longest example) and reused, so an update allocates no activation or gradient memory.
public final class Trainer {
  /// The group of one that trains the adapter.
  public let group: FusedTrainer
  /// The adapter's training state: data, optimizer, counters.
  public var state: AdapterState { group.trainers[0] }
  public var model: LlamaModel { group.model }
  public var adapter: LoRAAdapter { state.adapter }
  public var optimizer: AdamW { state.optimizer }
  public var options: TrainingOptions { state.options }
  public var schedule: LearningRateSchedule { state.schedule }
  /// The ranks this run spans (one rank: `LocalCommunicator.single()`).
  public var communicator: any Communicator { group.communicator }
  /// The training examples (route signatures sample their prompts).
  public var trainingExamples: [Example] { state.trainingExamples }
  /// Set (from any thread, e.g. a SIGTERM handler) to stop after the current update with a
  /// checkpoint; all ranks stop together when any rank's flag is set.
  public let stopRequest: StopRequest
  /// Bytes the gradient all-reduce moves per update, and its time over this process's run.
  public var allreduceBytes: Int { group.allreduceBytes }
  public var allreduceSeconds: Double { group.allreduceSeconds }
  /// With `separateWaiting`, a barrier before the all-reduce takes the time ranks wait for
  /// the slowest one (load imbalance), so `allreduceSeconds` is the transfer alone.
  public var separateWaiting: Bool {
    get { group.separateWaiting }
    set { group.separateWaiting = newValue }
  }
  public var waitingSeconds: Double { group.waitingSeconds }
  /// Every this many updates (0: never), check that all ranks hold the same adapter.
  public var checkEvery = 0
  /// Updates taken so far (counting those before a resume).
  public var step: Int { state.step }
  /// Tokens of all updates so far, and how many of them were trained on.
  public var tokensSeen: Int { state.tokensSeen }
  public var trainedTokensSeen: Int { state.trainedTokensSeen }
  /// The loss of the latest update.
  public var lastLoss: Double? { state.lastLoss }

  /// Trains `adapter` (its own parameters and gradients) on `train`, every rank its slice
  /// of each global batch; every rank starts from rank 0's parameters.
  public init(
    model: LlamaModel, adapter: LoRAAdapter, train: [Example], validation: [Example],
    options: TrainingOptions,
    padID: Int32, communicator: any Communicator = LocalCommunicator.single(),
    stopRequest: StopRequest = StopRequest()
  ) throws {
    self.stopRequest = stopRequest
    let state = try AdapterState(
      model: model, adapter: adapter, train: train, validation: validation, options: options, padID: padID,
      communicator: communicator)
    group = try FusedTrainer(
      model: model, states: [state], parameters: adapter.parameters, gradients: adapter.gradients,
      padID: padID,
      communicator: communicator)
  }

  /// Floats of activation and gradient memory the run uses.
  public var bufferFloats: Int { group.bufferFloats }

  /// How `run` ended.
  public typealias Ending = FusedTrainer.Ending
  /// Which part of each global batch a rank trains on.
  public typealias Share = AdapterState.Share

  /// Runs updates until `options.steps` (or `until`), reporting each, the validation loss
  /// every `options.evaluateEvery` updates and after the last, and — with `checkpoints`
  /// (given on rank 0 only: only rank 0 writes) — a checkpoint every `checkpoints.every`
  /// updates, after the last, and when a stop was requested (`FusedTrainer.run`).
  ///
  /// - Throws: the first error of an update or of writing a checkpoint; training stops
  ///   there and earlier checkpoints stay as they were.
  @discardableResult
  public func run(
    until last: Int? = nil, checkpoints: Checkpointing? = nil, onEvent: (TrainingEvent) -> Void
  ) throws -> Ending {
    try group.run(
      until: last, checkpoints: [checkpoints], stop: stopRequest, checkEvery: checkEvery,
      onEvent: { _, event in onEvent(event) })
  }

  /// Whether the validation loss is due after the current update.
  public var validationIsDue: Bool { state.validationIsDue }

  /// One update on the next global batch.
  public func update() throws -> StepMetrics { try group.update()[0].metrics }

  /// Mean loss over the validation set (no gradients), and its trained-token count.
  public func validationLoss() throws -> (loss: Double, tokens: Int) { try state.validationLoss() }

  /// The header of a checkpoint of the current state.
  public func checkpointHeader(base: CheckpointHeader.Base, kind: CheckpointHeader.Kind = .resumable)
    -> CheckpointHeader
  { state.checkpointHeader(base: base, kind: kind) }

  /// The tensors of a resumable checkpoint: the adapter and both AdamW moments.
  public var checkpointTensors: [(name: String, tensor: Tensor)] { state.checkpointTensors }

  /// Writes a resumable checkpoint of the current state.
  public func saveCheckpoint(_ checkpoints: Checkpointing) throws -> CheckpointStore.Saved {
    try state.saveCheckpoint(checkpoints)
  }

  /// Continues from `reader` (`AdapterState.resume`).
  public func resume(from reader: CheckpointReader, fingerprint: String, force: Bool = false) throws {
    try state.resume(from: reader, fingerprint: fingerprint, force: force)
  }

  /// Gives every rank `root`'s state (`AdapterState.synchronizeState`).
  public func synchronizeState(from root: Int = 0) throws { try state.synchronizeState(from: root) }
}
