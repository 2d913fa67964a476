import Foundation
import LoRACheckpoint
import LoRAComm
import LoRAKernels
import LoRAModel

/// An adapter's training state in and out of checkpoints: what a resumable checkpoint records, and
/// continuing from one exactly (docs/checkpoint-format.md, "Resuming").
extension AdapterState {
  /// The header of a checkpoint of the current state.
  public func checkpointHeader(base: CheckpointHeader.Base, kind: CheckpointHeader.Kind = .resumable)
    -> CheckpointHeader
  {
    let resumable = kind == .resumable
    return CheckpointHeader(
      kind: kind, created: ISO8601DateFormatter().string(from: Date()),
      codeVersion: CheckpointFormat.codeVersion,
      adapter: adapter.config, scaleConvention: adapter.scaleConvention, modules: adapter.checkpointModules,
      base: base, precision: .f32,
      training: .init(
        step: step, totalSteps: options.steps, tokensSeen: tokensSeen, trainedTokensSeen: trainedTokensSeen,
        samplesSeen: sampler.globalPosition(step: step), globalBatch: options.batchSize,
        exampleCount: train.count, shuffle: options.shuffle, ranks: communicator.size, lastLoss: lastLoss),
      schedule: resumable
        ? .init(
          kind: options.schedule.rawValue, peak: options.learningRate, warmupSteps: options.warmupSteps,
          totalSteps: options.steps, nextRate: schedule.rate(step: step)) : nil,
      optimizer: resumable
        ? .init(
          name: "adamw", step: optimizer.step, beta1: options.adamW.beta1, beta2: options.adamW.beta2,
          eps: options.adamW.eps, weightDecay: options.adamW.weightDecay,
          maxGradNorm: options.maxGradientNorm,
          loraplusLRRatio: options.loraPlusRatio == 1 ? nil : options.loraPlusRatio
        )
        .with(dpo: options.dpo)
        : nil,
      rng: .init(seed: options.seed), deltaBase: nil)
  }

  /// The tensors of a resumable checkpoint: the adapter and both AdamW moments.
  public var checkpointTensors: [(name: String, tensor: Tensor)] {
    [
      ("lora", adapter.parameters), ("adamw.exp_avg", optimizer.firstMoment),
      ("adamw.exp_avg_sq", optimizer.secondMoment),
    ]
  }

  /// Writes a resumable checkpoint of the current state through `checkpoints.store`.
  public func saveCheckpoint(_ checkpoints: CheckpointCadence) throws -> CheckpointStore.Saved {
    try checkpoints.store.save(
      header: checkpointHeader(base: checkpoints.base), tensors: checkpointTensors, step: step)
  }

  /// Continues from `reader`: adapter, moments, step and counters. The checkpoint must be
  /// resumable, for the same base fingerprint and adapter layout, and written with the
  /// options that shape the run (batch, data size, seed, shuffling, learning rate and
  /// schedule, AdamW, clipping); only the number of updates may grow.
  ///
  /// - Throws: `CheckpointError.mismatch` listing every difference.
  public func resume(from reader: CheckpointReader, fingerprint: String, force: Bool = false) throws {
    let h = reader.header
    guard h.kind == .resumable, let training = h.training, let schedule = h.schedule,
      let optimizerState = h.optimizer, let rng = h.rng
    else {
      throw CheckpointError.mismatch(
        file: reader.path, reason: "is a weights-only checkpoint; resume needs a resumable one (from train)")
    }
    try LoRAAdapter.checkBase(of: reader, fingerprint: fingerprint, config: model.config, force: force)
    var differences: [String] = []
    func check<T: Equatable>(_ what: String, _ saved: T, _ now: T) {
      if saved != now { differences.append("\(what) \(saved) in the checkpoint, \(now) now") }
    }
    check("adapter modules", h.modules.count, adapter.checkpointModules.count)
    if h.modules.count == adapter.checkpointModules.count && h.modules != adapter.checkpointModules {
      differences.append("adapter layout (rank, alpha or targets) differs")
    }
    check("lora_dropout", h.adapter.loraDropout, adapter.config.loraDropout)
    check("batch size", training.globalBatch, options.batchSize)
    check("training examples", training.exampleCount, train.count)
    check("shuffle", training.shuffle, options.shuffle)
    check("seed", rng.seed, options.seed)
    check("learning rate", schedule.peak, options.learningRate)
    check("schedule", schedule.kind, options.schedule.rawValue)
    check("warmup", schedule.warmupSteps, options.warmupSteps)
    check("AdamW beta1", optimizerState.beta1, options.adamW.beta1)
    check("AdamW beta2", optimizerState.beta2, options.adamW.beta2)
    check("AdamW eps", optimizerState.eps, options.adamW.eps)
    check("weight decay", optimizerState.weightDecay, options.adamW.weightDecay)
    check("max gradient norm", optimizerState.maxGradNorm, options.maxGradientNorm)
    check("LoRA+ learning rate ratio", optimizerState.loraplusLRRatio ?? 1, options.loraPlusRatio)
    check("objective", optimizerState.objective ?? "sft", options.dpo == nil ? "sft" : "dpo")
    if let dpo = options.dpo, optimizerState.objective == "dpo" {
      check("DPO beta", optimizerState.beta ?? .nan, dpo.beta)
      check("DPO label smoothing", optimizerState.labelSmoothing ?? .nan, dpo.labelSmoothing)
    }
    guard differences.isEmpty else {
      throw CheckpointError.mismatch(
        file: reader.path,
        reason: "was written by a run with other settings: " + differences.joined(separator: "; ")
          + "; resume with the original settings")
    }
    guard training.step <= options.steps else {
      throw CheckpointError.mismatch(
        file: reader.path,
        reason: "is at update \(training.step), past this run's \(options.steps) updates; raise --steps")
    }
    guard training.samplesSeen == sampler.globalPosition(step: training.step) else {
      throw CheckpointError.mismatch(
        file: reader.path,
        reason:
          "its data cursor \(training.samplesSeen) is not update \(training.step) × batch \(options.batchSize)"
      )
    }
    let moments = (Tensor(zeros: [adapter.parameterCount]), Tensor(zeros: [adapter.parameterCount]))
    try reader.read("lora", into: adapter.parameters)
    try reader.read("adamw.exp_avg", into: moments.0)
    try reader.read("adamw.exp_avg_sq", into: moments.1)
    optimizer.restore(step: optimizerState.step, firstMoment: moments.0, secondMoment: moments.1)
    step = training.step
    tokensSeen = training.tokensSeen
    trainedTokensSeen = training.trainedTokensSeen
    lastLoss = training.lastLoss
  }

  /// Gives every rank `root`'s state: adapter, AdamW moments and step, counters. Called
  /// after `root` alone resumed from a checkpoint (the others may not see the file).
  public func synchronizeState(from root: Int = 0) throws {
    guard communicator.size > 1 else { return }
    try communicator.broadcast(adapter.parameters, root: root)
    try communicator.broadcast(optimizer.firstMoment, root: root)
    try communicator.broadcast(optimizer.secondMoment, root: root)
    struct Counters: Codable {
      var step, optimizerStep, tokensSeen, trainedTokensSeen: Int
      var lastLoss: Double?
    }
    var bytes = [UInt8](
      try JSONEncoder().encode(
        Counters(
          step: step, optimizerStep: optimizer.step, tokensSeen: tokensSeen,
          trainedTokensSeen: trainedTokensSeen,
          lastLoss: lastLoss)))
    try communicator.broadcast(&bytes, root: root)
    let counters = try JSONDecoder().decode(Counters.self, from: Data(bytes))
    step = counters.step
    optimizer.step = counters.optimizerStep
    tokensSeen = counters.tokensSeen
    trainedTokensSeen = counters.trainedTokensSeen
    lastLoss = counters.lastLoss
  }
}

extension CheckpointHeader.Optimizer {
  /// This state with DPO's objective and settings recorded (nothing for the next-token loss).
  func with(dpo: DPOLoss?) -> Self {
    var state = self
    if let dpo {
      (state.objective, state.beta, state.labelSmoothing) = ("dpo", dpo.beta, dpo.labelSmoothing)
    }
    return state
  }
}
