import Foundation
import LoRACheckpoint
import LoRAComm
import LoRAKernels
import LoRAModel
import LoRAServe
import LoRATraining

/// Trains one unit of a run on its ranks: one adapter alone (`train`, or a job's shared
/// adapter) or several fused — the same code, since one adapter is a fused group of one.
/// Loads each adapter's data, checks that every rank trains the same thing, resumes from
/// checkpoints, runs the one loop (`FusedTrainer.run`) with validation, checkpoint cadence
/// and successive halving, and writes each adapter's outputs (`AdapterOutput`). Only rank 0
/// writes and reports: `emit` is called there alone.
public struct UnitRun {
  public var plans: [TrainingPlan]
  public var loaded: LoadedModel
  public var communicator: any Communicator
  /// Whether the adapters train fused (reported with their names); false for one adapter
  /// trained alone.
  public var fused: Bool
  public var stop: StopRequest
  /// Every this many updates (0: never), all ranks check that they hold the same adapters.
  public var checkEvery = 0
  /// Whether other rank groups report at the same time.
  public var concurrent = false
  /// Where a job placed the unit: when set, each adapter's metrics get a `unit` line with
  /// the unit's start and end.
  public var placement: UnitPlacement?
  /// Adapters (in memory, by plan) to start from instead of each plan's `initAdapter`.
  public var initialAdapters: [LoRAAdapter?] = []
  /// Called on every rank once training ended (not when stopped), or once an earlier run's
  /// finished adapter is resumed, with the trained group.
  public var afterTraining: ((FusedTrainer) throws -> Void)?
  let emit: (RunEvent) -> Void

  public init(
    plans: [TrainingPlan], loaded: LoadedModel, communicator: any Communicator, fused: Bool,
    stop: StopRequest = StopRequest(), checkEvery: Int = 0, emit: @escaping (RunEvent) -> Void
  ) {
    self.plans = plans
    self.loaded = loaded
    self.communicator = communicator
    self.fused = fused
    self.stop = stop
    self.checkEvery = checkEvery
    self.emit = emit
  }

  var leader: Bool { communicator.rank == 0 }

  /// The adapter `k` as events name it.
  func ref(_ k: Int) -> AdapterRef {
    AdapterRef(
      name: plans[k].name, fused: fused, totalSteps: plans[k].options.steps, output: plans[k].output.path,
      concurrent: concurrent)
  }

  /// What a unit holds once it is ready to train: its plans with the data's steps
  /// resolved, the loaded data, the fused group (resumed), each adapter's checkpoint cadence
  /// and outputs, and which adapters an earlier run finished.
  struct Prepared {
    var run: UnitRun
    var data: [TrainingPlan.LoadedData]
    var group: FusedTrainer
    var fingerprint: String
    var cadences: [CheckpointCadence]
    var outputs: [AdapterOutput]
    var finishedBefore: Set<Int>
  }

  /// Runs the unit; `.stopped` when a stop was requested (every adapter checkpointed).
  public func execute() throws -> FusedTrainer.Ending {
    let started = Date()
    guard let prepared = try prepare() else { return .finished }
    let run = prepared.run
    let (ending, lastCheckpoint, halving) = try run.train(prepared)
    if case .finished = ending { try afterTraining?(prepared.group) }
    // Every rank's memory, for the summary: peak RSS and the proportional share (PSS).
    let memory = try ResidentMemory.perRank(communicator)
    // Every rank's time by phase, per update (bench and train --json show where it goes).
    let updates = prepared.group.timedUpdates
    let phases = try prepared.group.rankPhases().map { $0.divided(by: Double(updates)) }
    guard leader else { return ending }
    if updates > 0 {
      let lines = phases.enumerated().map { $0.element.object(rank: $0.offset) }
      for (k, output) in prepared.outputs.enumerated() {
        output.record([
          "event": "phases", "step": prepared.group.trainers[k].step, "updates": updates, "ranks": lines,
        ])
      }
      emit(.phases(run.ref(0), perRank: phases, updates: updates))
    }
    if case .stopped(let step) = ending {
      run.recordUnit(prepared, started: started, stopped: true)
      emit(.stopped(run.ref(0), step: step, checkpoint: lastCheckpoint?.path))
      return ending
    }
    for (name, summary) in halving.summaries() {
      emit(.sweepFinished(sweep: name, summary: summary, concurrent: concurrent))
    }
    try run.finish(
      prepared, elapsed: Date().timeIntervalSince(started), lastCheckpoint: lastCheckpoint, memory: memory,
      phases: updates > 0 ? phases : [])
    run.recordUnit(prepared, started: started, stopped: false)
    return ending
  }

  /// Loads the data, builds the fused group, checks that all ranks agree, resumes, and makes
  /// the outputs (with the base's validation loss, update 0); nil when one adapter
  /// alone had finished in an earlier run (reported as skipped).
  func prepare() throws -> Prepared? {
    var run = self
    var data: [TrainingPlan.LoadedData] = []
    for k in run.plans.indices {
      data.append(
        try run.plans[k].loadData(
          tokenizer: loaded.tokenizer, chatTemplate: loaded.files.chatTemplate, ranks: communicator.size))
    }
    let plans = run.plans
    for plan in plans { try plan.checkContext(loaded.model) }
    // One adapter alone splits its batch over the ranks: it must divide.
    if !fused { try plans[0].options.validate(ranks: communicator.size) }
    let members = plans.indices.map { k in
      FusedTrainer.Member(
        config: plans[k].lora, initialisationSeed: plans[k].options.seed, train: data[k].train,
        validation: data[k].validation, options: plans[k].options)
    }
    let group = try FusedTrainer(
      model: loaded.model, members: members, padID: loaded.padID, communicator: communicator)
    let fingerprint = BaseFingerprint.of(loaded.model, files: loaded.files)
    try run.checkAgreement(fingerprint: fingerprint)
    try run.attachChains(group)
    let resumedFrom = try run.resume(group, fingerprint: fingerprint)
    try run.warmStart(group)
    if !fused, try run.finishedEarlier(group, resumedFrom: resumedFrom[0]) {
      try afterTraining?(group)
      return nil
    }
    let cadences = try plans.map {
      try $0.checkpointing(
        base: .init(fingerprint: fingerprint, source: $0.model, config: loaded.model.config))
    }
    if !fused && leader {
      emit(.started(run.ref(0), intro: run.intro(group, data: data[0], resumedFrom: resumedFrom[0])))
    }
    let finishedBefore = Set(plans.indices.filter { leader && fused && plans[$0].isFinished })
    let outputs = try plans.indices.map { k in
      try AdapterOutput(
        folder: plans[k].output, totalSteps: plans[k].options.steps, adapterName: fused ? plans[k].name : nil,
        leader: leader,
        start: plans[k].resumeSource == nil
          ? .fresh : finishedBefore.contains(k) ? .finished : .resumed(step: group.trainers[k].step))
    }
    try run.validateBase(group, outputs: outputs)
    return Prepared(
      run: run, data: data, group: group, fingerprint: fingerprint, cadences: cadences, outputs: outputs,
      finishedBefore: finishedBefore)
  }

  /// The one loop (`FusedTrainer.run`) with the outputs and events of every update,
  /// validation and checkpoint, and successive halving after each update.
  func train(_ p: Prepared) throws -> (
    ending: FusedTrainer.Ending, lastCheckpoint: CheckpointStore.Saved?, halving: SweepHalving
  ) {
    let halving = try SweepHalving(self, group: p.group, outputs: p.outputs, cadences: p.cadences)
    var lastCheckpoint: CheckpointStore.Saved?
    let (outputs, leader, run) = (p.outputs, leader, self)
    let ending = try p.group.run(
      checkpoints: leader ? p.cadences : [], stop: stop, checkEvery: checkEvery,
      afterUpdate: { _ in try halving.scoreDueRungs() },
      onEvent: { k, event in
        switch event {
        case .step(let m):
          outputs[k].step(m)
          if leader { run.emit(.step(run.ref(k), m)) }
        case .validation(let step, let loss, let tokens):
          outputs[k].validation(
            step: step, loss: loss, tokens: tokens, preference: p.group.trainers[k].lastPreferenceValidation)
          if leader { run.emit(.validation(run.ref(k), step: step, loss: loss, tokens: tokens)) }
        case .checkpoint(let saved):
          lastCheckpoint = saved
          outputs[k].checkpoint(saved)
          if leader { run.emit(.checkpoint(run.ref(k), saved)) }
        case .reference(let scored, let pairs, let seconds):
          if scored == pairs {
            outputs[k].record(AdapterOutput.object(referencePairs: pairs, seconds: seconds))
          }
          if leader { run.emit(.reference(run.ref(k), scored: scored, pairs: pairs, seconds: seconds)) }
        }
      })
    return (ending, lastCheckpoint, halving)
  }

  /// Writes each adapter an earlier run did not finish (adapter, report, configuration,
  /// route signature) and reports it finished with its summary; rank 0 only.
  func finish(
    _ p: Prepared, elapsed: Double, lastCheckpoint: CheckpointStore.Saved?,
    memory: [(peak: Int, proportional: Int)], phases: [PhaseTimes]
  ) throws {
    for k in plans.indices where !p.finishedBefore.contains(k) {
      let state = p.group.trainers[k]
      let timeRow = RunEvent.SummaryRow(
        "time per update",
        phases.enumerated().map { "rank \($0.offset): \($0.element.line)" }.joined(separator: "; "))
      let summary =
        (fused
          ? fusedSummary(k, group: p.group, output: p.outputs[k])
          : self.summary(
            p.group, output: p.outputs[k], data: p.data[0], elapsed: elapsed, lastCheckpoint: lastCheckpoint,
            memory: memory)) + (phases.isEmpty ? [] : [timeRow])
      try p.outputs[k].finish(
        adapter: state.adapter, baseModel: plans[k].model,
        title: fused
          ? "LoRA training (fused): \(plans[k].name ?? "")"
          : "LoRA training: \(plans[k].output.lastPathComponent)",
        summary: summary.map { ($0.label, $0.value) }, configuration: try plans[k].configurationRows(),
        signature: RouteSignature.of(
          state.trainingExamples, model: loaded.model, baseFingerprint: p.fingerprint))
      emit(
        .finished(
          ref(k), summary: summary, finalLoss: p.outputs[k].steps.last?.loss,
          validationLoss: p.outputs[k].validations.last?.loss))
    }
  }

  /// The base's validation loss (update 0, before any update) of every adapter that starts
  /// from scratch and has validation data: a metrics line and an event each.
  func validateBase(_ group: FusedTrainer, outputs: [AdapterOutput]) throws {
    for k in plans.indices where group.trainers[k].hasValidation && group.trainers[k].step == 0 {
      let (loss, tokens) = try group.trainers[k].validationLoss()
      outputs[k].validation(
        step: 0, loss: loss, tokens: tokens, preference: group.trainers[k].lastPreferenceValidation)
      if leader { emit(.validation(ref(k), step: 0, loss: loss, tokens: tokens)) }
    }
  }

  /// With a `placement` (a job's unit), each adapter's `unit` metrics line: the unit ran
  /// from `started` until now; adapters an earlier run finished get none.
  func recordUnit(_ p: Prepared, started: Date, stopped: Bool) {
    guard let placement else { return }
    let ended = Date()
    for k in plans.indices where !p.finishedBefore.contains(k) {
      p.outputs[k].record(
        AdapterOutput.object(
          unit: placement, step: p.group.trainers[k].step, started: started, ended: ended, stopped: stopped))
    }
  }

  /// Every rank must train the same thing: same settings, same data, same base.
  func checkAgreement(fingerprint: String) throws {
    var checks: [(String, String)] = []
    for plan in plans {
      let prefix = fused ? "\(plan.name ?? ""): " : ""
      checks += [
        (prefix + "settings", try plan.settingsHash()), (prefix + "training data", try plan.dataHash()),
      ]
    }
    checks.append(("base model", fingerprint))
    try communicator.checkAgreement(checks)
  }

  /// Resumes every adapter that has a checkpoint to resume from (rank 0 reads it, the
  /// others receive its state); what each resumed from, on rank 0.
  func resume(_ group: FusedTrainer, fingerprint: String) throws -> [String?] {
    var resumedFrom = [String?](repeating: nil, count: plans.count)
    for (k, plan) in plans.enumerated() {
      guard let source = plan.resumeSource else { continue }
      let state = group.trainers[k]
      if leader {
        let readStarted = Date()
        let (reader, skipped) = try CheckpointStore.newestValid(source)
        for (file, reason) in skipped { emit(.warning(ref(k), "skipping \(file): \(reason)")) }
        try state.resume(from: reader, fingerprint: fingerprint, force: plan.force)
        resumedFrom[k] =
          "\(reader.path) (update \(state.step); read, verified and restored in "
          + "\(format(Date().timeIntervalSince(readStarted) * 1000, 1)) ms)"
      }
      try state.synchronizeState(from: 0)
    }
    return resumedFrom
  }

  /// Whether one adapter alone resumed at its last update with its outputs in place: a
  /// finished run, left as it is (reported as skipped).
  func finishedEarlier(_ group: FusedTrainer, resumedFrom: String?) throws -> Bool {
    guard plans[0].resumeSource != nil else { return false }
    let state = group.trainers[0]
    var complete = [
      leader && state.step >= state.options.steps && AdapterOutput.isComplete(plans[0].output) ? 1.0 : 0
    ]
    if communicator.size > 1 { try communicator.allreduce(&complete, .max) }
    guard complete[0] > 0 else { return false }
    if leader { emit(.skipped(ref(0), step: state.step, detail: resumedFrom)) }
    return true
  }
}
