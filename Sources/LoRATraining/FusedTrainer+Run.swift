import LoRACheckpoint
import LoRAComm

/// The training loop, for one adapter (`Trainer.run`) and for a fused group alike.
extension FusedTrainer {
  /// How `run` ended.
  public enum Ending: Equatable, Sendable {
    /// All the asked-for updates were taken.
    case finished
    /// A stop was requested (on some rank); training stopped after this update, with a
    /// checkpoint for every member that has checkpoints.
    case stopped(step: Int)
  }

  /// Runs updates until every member has taken its `options.steps` (or `until`) or retired.
  /// First, each DPO member that `precomputesReference` scores its reference (reported as
  /// `.reference`; every rank of the group takes part; a stop requested meanwhile ends the
  /// run there, with no update taken and no checkpoint written). After each update: `afterUpdate`
  /// (successive halving retires members there, before their update is reported), then for
  /// each member that updated, in member order, its step, its validation loss when due (every
  /// `options.evaluateEvery` updates and after the last), and — with `checkpoints[k]` (given
  /// on rank 0 only: only rank 0 writes) — a checkpoint when due (`CheckpointCadence.isDue`:
  /// every `every` updates, after the last, and when a stop was requested). With
  /// `checkEvery` > 0, every that many updates all ranks check that they hold the same
  /// parameters.
  ///
  /// - Parameters:
  ///   - checkpoints: one entry per member (nil: no checkpoints for it), or empty.
  ///   - stop: read before every update; all ranks stop together when any rank's is set.
  /// - Throws: the first error of an update, a hook or a checkpoint; training stops there
  ///   and earlier checkpoints stay as they were.
  @discardableResult
  public func run(
    until last: Int? = nil, checkpoints: [CheckpointCadence?] = [], stop: StopRequest = StopRequest(),
    checkEvery: Int = 0, afterUpdate: (_ stopping: Bool) throws -> Void = { _ in },
    onEvent: (_ member: Int, TrainingEvent) throws -> Void
  ) throws -> Ending {
    limit = last
    defer { limit = nil }
    for (k, member) in trainers.enumerated()
    where isActive(k) && member.precomputesReference && member.referenceTable == nil {
      let pairs = member.trainingExamples.count / 2
      let scored = try member.scoreReference(
        progress: { scored, seconds in
          try onEvent(k, .reference(scored: scored, pairs: pairs, seconds: seconds))
        },
        stopping: { try anyRankStops(stop.isSet) })
      // A stop while scoring: no update was taken, the checkpoints stay as they were.
      guard let (_, seconds) = scored else { return .stopped(step: member.step) }
      try onEvent(k, .reference(scored: pairs, pairs: pairs, seconds: seconds))
    }
    while !finished {
      let (results, stopping) = try update(stopFlag: stop.isSet)
      try afterUpdate(stopping)
      for (k, metrics) in results {
        let member = trainers[k]
        try onEvent(k, .step(metrics))
        if member.validationIsDue {
          let (loss, tokens) = try member.validationLoss()
          try onEvent(k, .validation(step: member.step, loss: loss, tokens: tokens))
        }
        if k < checkpoints.count, let cadence = checkpoints[k],
          cadence.isDue(after: member.step, last: min(last ?? .max, member.options.steps), stopping: stopping)
        {
          try onEvent(k, .checkpoint(try member.saveCheckpoint(cadence)))
        }
      }
      if let first = results.first, checkEvery > 0, communicator.size > 1,
        trainers[first.member].step % checkEvery == 0
      {
        try communicator.checkAgreement([
          (
            "adapter parameters after update \(trainers[first.member].step)",
            BaseFingerprint.sha256(parameters.bytes())
          )
        ])
      }
      if stopping { return .stopped(step: results.first.map { trainers[$0.member].step } ?? 0) }
    }
    return .finished
  }

  /// Whether any rank of the group asked to stop (`flag`: this rank's request); every rank
  /// calls it together.
  func anyRankStops(_ flag: Bool) throws -> Bool {
    var flags = [flag ? 1.0 : 0]
    if communicator.size > 1 { try communicator.allreduce(&flags, .max) }
    return flags[0] > 0
  }
}
