import Foundation
import LoRACheckpoint
import LoRAComm
import LoRACoordinator
import LoRAFormats
import LoRAKernels
import LoRAModel
import LoRAServe
import LoRATraining

/// `train --jobs FILE`: every adapter of a job file, on the plan's rank groups.
///
/// All ranks load the base once (shared per node), make the queue's claim counters (one per
/// queued unit, on the world communicator), then split into the plan's groups. Each group
/// first trains what the plan placed on it up front, in order; then its rank 0 claims the
/// next queued unit it can train (the first in queue order whose counter it finds at 0),
/// tells its ranks, trains it, and claims again until the queue is empty. So the queue
/// follows the groups' actual finishing times, not the plan's estimate. A single adapter
/// trains data-parallel on the group (the usual `train`), several adapters train fused
/// (`FusedTrainer`), each with its own outputs — checkpoints, metrics, PEFT folder, report —
/// in its output folder. A run that stopped resumes every unfinished adapter from its own
/// checkpoints; finished adapters are skipped without loading their data.
struct JobRun {
  let job: JobFile
  let progress: Progress
  let stop: StopRequest

  /// Runs the job on this rank of `world`; returns whether the job stopped on request.
  func execute(world: any Communicator) throws -> Bool {
    try job.validate(ranks: world.size)
    let loaded = try TrainingRun.LoadedModel(path: job.model, communicator: world)
    var data: [String: DataEstimate] = [:]
    for adapter in job.adapters {
      for file in [adapter.settings.data, adapter.settings.validationData].compactMap({ $0 })
      where data[file] == nil {
        data[file] = try DataEstimate.measure(path: file)
      }
    }
    let plan = try Planner.plan(
      job.adapters, ranks: world.size, cost: CostModel(model: loaded.model.config), data: data)
    // Made on the world before the split, so every group's leader claims from the same ones.
    let counters = try world.makeCounters(plan.queuedUnits.count)
    let mine = plan.group(ofRank: world.rank)
    let comm = try world.split(colour: mine?.index ?? plan.groups.count, key: world.rank)
    if world.rank == 0 && progress.jsonLines {
      progress.emit([
        "event": "job", "path": job.path, "adapters": job.adapters.count, "ranks": world.size,
        "groups": plan.groups.count, "estimated_seconds": plan.estimatedSeconds,
        "queued": plan.queuedUnits.count,
      ])
    } else if world.rank == 0 {
      print(
        "job \(job.path): \(job.adapters.count) adapter(s) on \(world.size) rank(s) in \(plan.groups.count) group(s)"
          + ", estimated \(duration(plan.estimatedSeconds))"
          + (plan.queuedUnits.isEmpty
            ? "" : "; \(plan.queuedUnits.count) queued, taken by the groups as they become free"))
    }
    let context = GroupContext(plan: plan, counters: counters, labelled: plan.groups.count > 1)
    var stopped = false
    if let group = mine { stopped = try runGroup(group, comm: comm, loaded: loaded, context: context) }
    // One report over every adapter, once all groups are done.
    var anyStopped = [stopped ? 1.0 : 0]
    try world.allreduce(&anyStopped, .max)
    // Every rank frees the counters' window here, together (MPI frees it collectively).
    withExtendedLifetime(counters) {}
    if world.rank == 0 && anyStopped[0] == 0 {
      try writeCombinedReport(
        job.adapters.map { AdapterSummary(name: $0.name, output: $0.output) }.filter {
          FileManager.default.fileExists(atPath: $0.output + "/report.html")
        })
    }
    return anyStopped[0] > 0
  }

  /// What every group of a run shares: the plan, the queue's counters, and whether progress
  /// lines carry the adapter's name (more than one group prints at a time).
  struct GroupContext {
    var plan: LoRACoordinator.Plan
    var counters: any SharedCounters
    var labelled: Bool
  }

  /// Works through `group`'s up-front runs in order on its communicator, then takes queued
  /// units until none is left.
  func runGroup(
    _ group: RankGroup, comm: any Communicator, loaded: TrainingRun.LoadedModel, context: GroupContext
  ) throws -> Bool {
    var stopped = false
    for run in group.runs where !run.queued && !stopped {
      if comm.rank == 0 && progress.jsonLines {
        progress.emit([
          "event": "group", "group": group.index,
          "ranks": [group.ranks.lowerBound, group.ranks.upperBound - 1],
          "placement": run.placement.rawValue, "adapters": run.adapters,
        ])
      } else if comm.rank == 0 {
        print(
          "group \(group.index) (ranks \(group.ranks.lowerBound)–\(group.ranks.upperBound - 1)): "
            + "\(run.placement.rawValue) \(run.adapters.joined(separator: ", "))")
      }
      stopped = try train(
        run.adapters, placement: run.placement, comm: comm, loaded: loaded, context: context)
    }
    let queue = context.plan.queuedUnits
    var position = 0
    while !stopped {
      // Rank 0 claims the next unit this group can train; its ranks learn which (or none).
      var claimed = -1
      if comm.rank == 0 && !stop.isSet {
        while position < queue.count && claimed < 0 {
          let i = position
          position += 1
          if queue[i].groups.contains(group.index), try context.counters.next(i) == 0 { claimed = i }
        }
      }
      var decision = [Double(claimed), stop.isSet ? 1 : 0]
      if comm.size > 1 { try comm.allreduce(&decision, .max) }
      if decision[1] > 0 { return true }
      guard decision[0] >= 0 else { break }
      let unit = queue[Int(decision[0])]
      if comm.rank == 0 {
        if progress.jsonLines {
          progress.emit([
            "event": "queued", "group": group.index, "adapters": unit.adapters,
            "position": Int(decision[0]) + 1, "queued": queue.count,
          ])
        } else {
          print(
            "group \(group.index) takes queued adapter \(unit.adapters.joined(separator: ", ")) "
              + "(queue position \(Int(decision[0]) + 1)/\(queue.count))")
        }
      }
      stopped = try train(
        unit.adapters, placement: unit.adapters.count > 1 ? .fused : .shared, comm: comm, loaded: loaded,
        context: context)
    }
    return stopped
  }

  /// Trains the adapters `names` on `comm` (one alone, several fused), or skips them when all
  /// already finished in an earlier run; returns whether training stopped on request.
  func train(
    _ names: [String], placement: Placement, comm: any Communicator, loaded: TrainingRun.LoadedModel,
    context: GroupContext
  ) throws -> Bool {
    let adapters = names.map { name in job.adapters.first { $0.name == name }! }
    // Rank 0 alone may see the outputs (only it writes them); its ranks follow its verdict.
    var finished = [comm.rank == 0 && adapters.allSatisfy(Self.isFinished) ? 1.0 : 0]
    if comm.size > 1 { try comm.allreduce(&finished, .max) }
    if finished[0] > 0 {
      if comm.rank == 0 {
        for adapter in adapters {
          let shown = progress(adapter.name, context)
          if shown.jsonLines {
            shown.emit(["event": "skipped", "reason": "finished", "output": adapter.output])
          } else {
            shown.say("already finished: \(adapter.output) (skipped)")
          }
        }
      }
      return false
    }
    if adapters.count == 1 && placement != .fused {
      var training = try TrainingRun(settings(adapters[0]))
      training.tokensPerBatch = adapters[0].settings.tokensPerBatch
      let ending = try training.execute(
        progress: progress(adapters[0].name, context), communicator: comm, loaded: loaded, stop: stop)
      if case .stopped = ending { return true }
      return false
    }
    return try runFused(adapters, comm: comm, loaded: loaded, labelled: context.labelled)
  }

  /// The progress of adapter `name`: labelled in JSON lines (every object names its adapter)
  /// and in text when several groups print at once.
  func progress(_ name: String, _ context: GroupContext) -> Progress {
    progress.jsonLines || context.labelled ? progress.labelled(name) : progress
  }

  /// Whether `adapter` finished in an earlier run: its PEFT adapter and report are written,
  /// and its newest checkpoint is at its last update (or successive halving retired it).
  /// Reads one checkpoint header at most; nothing is loaded or rewritten.
  static func isFinished(_ adapter: AdapterJob) -> Bool {
    let output = URL(fileURLWithPath: adapter.output)
    let files = FileManager.default
    guard AdapterOutput.isComplete(output) else { return false }
    if files.fileExists(atPath: output.appendingPathComponent("retired.json").path) { return true }
    guard let newest = CheckpointStore.list(output.appendingPathComponent("checkpoints")).last,
      let training = try? CheckpointReader(path: newest.url.path).header.training
    else { return false }
    // More steps asked for than the checkpoint was written for: train on.
    return training.step == training.totalSteps && (adapter.settings.steps ?? training.step) == training.step
  }

  /// The per-run settings of one adapter of the job.
  /// `tokens_per_batch`, which `train` has no key for, is applied by the caller.
  func settings(_ adapter: AdapterJob) -> TrainConfiguration {
    TrainConfiguration(training: adapter.settings.training, model: job.model, resume: "auto")
  }

  struct AdapterSummary {
    var name: String
    var output: String
  }

  /// Trains `adapters` fused on `comm`: data, resume, updates, validation, checkpoints and
  /// outputs per adapter.
  func runFused(
    _ adapters: [AdapterJob], comm: any Communicator, loaded: TrainingRun.LoadedModel, labelled: Bool
  ) throws -> Bool {
    let leader = comm.rank == 0
    // A line about adapter (or sweep) `name`: "[name] text" when several groups print at
    // once, else "name: text"; with JSON output a "message" object naming it.
    func say(_ name: String, _ text: String) {
      if progress.jsonLines {
        progress.emit(["event": "message", "adapter": name, "message": text])
      } else {
        print(labelled ? "[\(name)] \(text)" : "\(name): \(text)")
      }
    }
    var runs = try adapters.map { adapter in
      var run = try TrainingRun(settings(adapter))
      run.tokensPerBatch = adapter.settings.tokensPerBatch
      return run
    }
    var members: [FusedTrainer.Member] = []
    for i in runs.indices {
      let (_, train, validation, _) = try runs[i].loadData(tokenizer: loaded.tokenizer, ranks: comm.size)
      members.append(
        .init(
          config: runs[i].lora, initialisationSeed: runs[i].options.seed, train: train,
          validation: validation,
          options: runs[i].options))
    }
    let padID = Int32(loaded.tokenizer.padID ?? loaded.tokenizer.eosID ?? 0)
    let fused = try FusedTrainer(model: loaded.model, members: members, padID: padID, communicator: comm)
    let fingerprint = BaseFingerprint.of(loaded.model, files: loaded.files)
    var stores: [Trainer.Checkpointing] = []
    for (k, run) in runs.enumerated() {
      let trainer = fused.trainers[k]
      if let source = run.resumeSource {
        if leader {
          let (reader, skipped) = try CheckpointStore.newestValid(source)
          for (file, reason) in skipped {
            FileHandle.standardError.write(
              Data("warning: \(adapters[k].name): skipping \(file): \(reason)\n".utf8))
          }
          try trainer.resume(from: reader, fingerprint: fingerprint)
        }
        try trainer.synchronizeState(from: 0)
      }
      stores.append(
        try run.checkpointing(
          base: .init(fingerprint: fingerprint, source: job.model, config: loaded.model.config)))
    }
    // Members whose outputs an earlier run completed keep them as they are.
    let alreadyFinished = Set(adapters.indices.filter { leader && Self.isFinished(adapters[$0]) })
    let outputs = try runs.enumerated().map { k, run in
      try AdapterOutput(
        folder: run.output, totalSteps: run.options.steps, adapterName: adapters[k].name, leader: leader,
        start: run.resumeSource == nil
          ? .fresh : alreadyFinished.contains(k) ? .finished : .resumed(step: fused.trainers[k].step))
    }
    // Shows a metrics line of member k (written by `outputs[k]`) on rank 0.
    func show(_ k: Int, _ object: [String: Any]) {
      if leader {
        if progress.jsonLines {
          progress.emit(object)
        } else if object["event"] as? String == "step" {
          say(
            adapters[k].name,
            "step \(object["step"]!)/\(fused.trainers[k].options.steps)  loss "
              + "\(format(object["loss"] as? Double ?? .nan, 4))  \(format(object["tokens_per_second"] as? Double ?? 0, 0)) tok/s"
          )
        } else if object["event"] as? String == "validation" {
          say(
            adapters[k].name,
            "step \(object["step"]!): validation loss \(format(object["loss"] as? Double ?? .nan, 4))")
        }
      }
    }
    // Successive halving: each sweep's members, and its rungs still ahead.
    var sweeps: [String: (members: [Int], halving: SuccessiveHalving, survivors: [Int], next: Int)] = [:]
    for (k, adapter) in adapters.enumerated() {
      guard let member = adapter.sweep, let halving = member.successiveHalving else { continue }
      var entry = sweeps[member.sweep] ?? ([], halving, halving.survivors(of: member.count), 0)
      entry.members.append(k)
      sweeps[member.sweep] = entry
    }
    var rungLosses: [Int: [(step: Int, loss: Double)]] = [:]
    // Members a halving rung stopped before an interruption stay stopped, and the rungs they
    // went through are not run again.
    for (k, run) in runs.enumerated()
    where FileManager.default.fileExists(atPath: run.output.appendingPathComponent("retired.json").path) {
      fused.retire(k)
    }
    for name in sweeps.keys {
      guard var entry = sweeps[name] else { continue }
      let reached = entry.members.map { fused.trainers[$0].step }.max() ?? 0
      let halvedHere = entry.members.contains {
        fused.retired.contains($0) && fused.trainers[$0].step == reached
      }
      entry.next = entry.halving.rungs.filter { $0 < reached || ($0 == reached && halvedHere) }.count
      sweeps[name] = entry
    }
    var stopped = false
    while !fused.finished && !stopped {
      let results = try fused.update()
      for name in sweeps.keys.sorted() {
        guard var entry = sweeps[name], entry.next < entry.halving.rungs.count else { continue }
        let rung = entry.halving.rungs[entry.next]
        let alive = entry.members.filter(fused.isActive)
        guard !alive.isEmpty, alive.allSatisfy({ fused.trainers[$0].step == rung }) else { continue }
        // Every rank scores the same members, so every rank retires the same ones.
        var scored: [(member: Int, loss: Double)] = []
        for k in alive {
          let loss = try fused.trainers[k].validationLoss().loss
          scored.append((k, loss))
          rungLosses[k, default: []].append((rung, loss))
        }
        scored.sort { ($0.loss, $0.member) < ($1.loss, $1.member) }
        let keep = entry.survivors[entry.next]
        for (k, loss) in scored.dropFirst(keep) {
          fused.retire(k)
          if leader {
            // Remembered across a resume: this member trains no further.
            let marker = try JSONSerialization.data(
              withJSONObject: ["step": rung, "validation_loss": loss, "sweep": name], options: [.sortedKeys])
            try marker.write(to: runs[k].output.appendingPathComponent("retired.json"), options: .atomic)
            show(k, outputs[k].checkpoint(try fused.trainers[k].saveCheckpoint(stores[k])))
          }
          show(
            k, outputs[k].record(["event": "halved", "step": rung, "validation_loss": loss, "kept": false]))
        }
        for (k, loss) in scored.prefix(keep) {
          show(
            k, outputs[k].record(["event": "halved", "step": rung, "validation_loss": loss, "kept": true]))
        }
        if leader && !progress.jsonLines {
          say(
            name,
            "rung at update \(rung): "
              + scored.enumerated().map { i, s in
                "\(adapters[s.member].name) \(format(s.loss, 4))\(i < keep ? "" : " (stopped)")"
              }.joined(separator: ", "))
        }
        entry.next += 1
        sweeps[name] = entry
      }
      var flag = [stop.isSet ? 1.0 : 0]
      if comm.size > 1 { try comm.allreduce(&flag, .max) }
      stopped = flag[0] > 0
      for (k, m) in results {
        show(k, outputs[k].step(m))
        let trainer = fused.trainers[k]
        if trainer.validationIsDue {
          let (loss, tokens) = try trainer.validationLoss()
          show(k, outputs[k].validation(step: trainer.step, loss: loss, tokens: tokens))
        }
        if leader && stores[k].isDue(after: trainer.step, last: trainer.options.steps, stopping: stopped) {
          show(k, outputs[k].checkpoint(try trainer.saveCheckpoint(stores[k])))
        }
      }
    }
    guard leader, !stopped else { return stopped }
    for name in sweeps.keys.sorted() {
      guard let entry = sweeps[name] else { continue }
      say(
        name,
        sweepSummary(
          name, members: entry.members, adapters: adapters, fused: fused,
          validations: outputs.map(\.validations))
      )
    }
    for (k, run) in runs.enumerated() where !alreadyFinished.contains(k) {
      let trainer = fused.trainers[k]
      let (steps, validations) = (outputs[k].steps, outputs[k].validations)
      try outputs[k].finish(
        adapter: trainer.adapter, baseModel: job.model, title: "LoRA training (fused): \(adapters[k].name)",
        summary: [
          (
            "adapter",
            "\(run.output.path) (PEFT), trained fused with "
              + adapters.map(\.name).filter { $0 != adapters[k].name }.joined(separator: ", ")
          ),
          ("updates", "\(trainer.step) of \(trainer.options.batchSize) sequences"),
          ("final training loss", steps.last.map { format($0.loss, 4) } ?? "-"),
          ("validation loss", validations.map { format($0.loss, 4) }.joined(separator: " → ")),
        ],
        configuration: try run.configurationRows(),
        signature: RouteSignature.of(
          trainer.trainingExamples, model: loaded.model, baseFingerprint: fingerprint))
      say(adapters[k].name, "adapter \(run.output.path), report \(run.output.path)/report.html")
    }
    return false
  }

  /// One page with every adapter's report side by side (each report in a frame).
  func writeCombinedReport(_ summaries: [AdapterSummary]) throws {
    guard !summaries.isEmpty else { return }
    let folder = URL(
      fileURLWithPath: job.output
        ?? URL(fileURLWithPath: summaries[0].output).deletingLastPathComponent().path)
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    let frames = summaries.map { summary -> String in
      let relative = URL(fileURLWithPath: summary.output).appendingPathComponent("report.html").path
      return
        "<section><h2>\(summary.name)</h2><iframe src=\"file://\(relative)\" loading=\"lazy\"></iframe></section>"
    }.joined(separator: "\n")
    let html = """
      <!doctype html><html lang="en"><head><meta charset="utf-8"><title>Job \(job.path)</title>
      <style>body { font: 15px/1.45 system-ui, sans-serif; margin: 1.5em; }
      main { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 1em; }
      iframe { width: 100%; height: 900px; border: 1px solid #ddd; }</style></head><body>
      <h1>Job \(job.path)</h1><main>
      \(frames)
      </main></body></html>
      """
    let name = "report.html"
    try Data(html.utf8).write(to: folder.appendingPathComponent(name), options: .atomic)
    if progress.jsonLines {
      progress.emit(["event": "combined_report", "path": "\(folder.path)/\(name)"])
    } else {
      print("combined report: \(folder.path)/\(name)")
    }
  }

  /// Which member of a sweep won, and the lowest rank that came within 2% of its final
  /// validation loss: the advice "start with a low rank and raise it if needed", measured.
  func sweepSummary(
    _ name: String, members: [Int], adapters: [AdapterJob], fused: FusedTrainer,
    validations: [[(step: Int, loss: Double)]]
  ) -> String {
    let finals = members.compactMap { k -> (member: Int, loss: Double, rank: Int)? in
      guard !fused.retired.contains(k), let loss = validations[k].last?.loss else { return nil }
      return (k, loss, fused.trainers[k].adapter.config.r)
    }
    guard let best = finals.min(by: { $0.loss < $1.loss }) else {
      return "no member finished with a validation loss"
    }
    let enough = finals.filter { $0.loss <= best.loss * 1.02 }.min {
      ($0.rank, $0.loss) < ($1.rank, $1.loss)
    }!
    return "best \(adapters[best.member].name) (validation loss \(format(best.loss, 4))); "
      + "rank \(enough.rank) was enough (\(adapters[enough.member].name) within 2% of the best)"
  }
}
