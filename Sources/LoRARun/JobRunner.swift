import Foundation
import LoRAComm
import LoRACoordinator
import LoRATraining

/// `train --jobs FILE`: every adapter of a job file, on the plan's rank groups.
///
/// All ranks load the base once (shared per node), make the queue's claim counters (one per
/// queued unit, on the world communicator), then split into the plan's groups. Each group
/// first trains what the plan placed on it up front, in order; then its rank 0 claims the
/// next queued unit it can train (the first in queue order whose counter it finds at 0),
/// tells its ranks, trains it, and claims again until the queue is empty. So the queue
/// follows the groups' actual finishing times, not the plan's estimate. Each unit is a
/// `UnitRun`: one adapter alone (data-parallel over the group) or several fused, each with
/// its own outputs in its output folder. A run that stopped resumes every unfinished
/// adapter from its own checkpoints; finished adapters are skipped without loading data.
public struct JobRunner {
  public let job: JobFile
  public let stop: StopRequest
  /// Called on the rank that reports each event (world rank 0 for the job, a group's rank
  /// 0 for its units).
  let emit: @Sendable (RunEvent) -> Void
  /// Called on this rank with an error, while the shared base is still held: releasing it
  /// is collective (every rank frees the node's window together), so a rank group that
  /// fails alone would wait there forever. An MPI launcher aborts the job here.
  public var failed: ((any Error) -> Void)?
  /// One copy of the base per NUMA domain (`NUMACopies`), shared by the ranks bound in it.
  public var numaCopies = false

  public init(job: JobFile, stop: StopRequest, emit: @escaping @Sendable (RunEvent) -> Void) {
    self.job = job
    self.stop = stop
    self.emit = emit
  }

  /// Runs the job on this rank of `world`; returns whether the job stopped on request.
  public func execute(world: any Communicator) throws -> Bool {
    let started = Date()
    try job.validate(ranks: world.size)
    let sharing = try NUMACopies.sharing(
      world, perDomain: numaCopies, topology: .current(), cpus: ThreadPlacement.currentThreadCPUs())
    let loaded = try LoadedModel(
      path: job.model, communicator: sharing.communicator, precision: job.basePrecision,
      attention: job.attentionPrecision)
    return try withExtendedLifetime(loaded) {
      do {
        return try execute(world: world, loaded: loaded, started: started)
      } catch let reported as Reported {
        throw reported.error
      } catch {
        failed?(error)
        throw error
      }
    }
  }

  /// The job on the loaded base: every level of the tree, then the combined report.
  func execute(world: any Communicator, loaded: LoadedModel, started: Date) throws -> Bool {
    var data: [String: DataEstimate] = [:]
    for adapter in job.adapters {
      for file in [adapter.settings.data, adapter.settings.validationData].compactMap({ $0 })
      where data[file] == nil {
        data[file] = try DataEstimate.measure(path: file)
      }
    }
    // A tree runs level by level: a child starts once its parent's adapter exists.
    for level in job.levels {
      let plan = try Planner.plan(
        level, ranks: world.size, cost: CostModel(model: loaded.model.config), data: data)
      if try run(plan, adapters: level.count, world: world, loaded: loaded) { return true }
    }
    if world.rank == 0 {
      emit(.combinedReport(path: try JobReport.gather(job: job, started: started).write()))
    }
    return false
  }

  /// Runs one level's plan of `adapters` adapters on this rank of `world`; returns whether
  /// any rank stopped on request.
  func run(_ plan: LoRACoordinator.Plan, adapters: Int, world: any Communicator, loaded: LoadedModel) throws
    -> Bool
  {
    // Made on the world before the split, so every group's leader claims from the same ones.
    let counters = try world.makeCounters(plan.queuedUnits.count)
    let mine = plan.group(ofRank: world.rank)
    let comm = try world.split(colour: mine?.index ?? plan.groups.count, key: world.rank)
    if world.rank == 0 {
      emit(
        .job(
          path: job.path, adapters: adapters, ranks: world.size, groups: plan.groups.count,
          estimatedSeconds: plan.estimatedSeconds, queued: plan.queuedUnits.count))
    }
    var stopped = false
    if let group = mine {
      do {
        stopped = try runGroup(
          group, plan: plan, counters: counters, comm: comm, loaded: loaded, concurrent: plan.groups.count > 1
        )
      } catch {
        // Before the counters' window and the group's communicator are released (collectively).
        failed?(error)
        throw Reported(error: error)
      }
    }
    var anyStopped = [stopped ? 1.0 : 0]
    // Groups that finished early wait here for the others, however long they train.
    try world.unbounded { try world.allreduce(&anyStopped, .max) }
    // Every rank frees the counters' window here, together (MPI frees it collectively).
    withExtendedLifetime(counters) {}
    return anyStopped[0] > 0
  }

  /// Works through `group`'s up-front runs in order on its communicator, then takes queued
  /// units until none is left.
  func runGroup(
    _ group: RankGroup, plan: LoRACoordinator.Plan, counters: any SharedCounters, comm: any Communicator,
    loaded: LoadedModel, concurrent: Bool
  ) throws -> Bool {
    var stopped = false
    let ranks = group.ranks.lowerBound...(group.ranks.upperBound - 1)
    for run in group.runs where !run.queued && !stopped {
      if comm.rank == 0 {
        emit(
          .group(index: group.index, ranks: ranks, placement: run.placement.rawValue, adapters: run.adapters))
      }
      let unit = UnitPlacement(
        group: group.index, ranks: ranks, placement: run.placement.rawValue, queued: false,
        adapters: run.adapters)
      stopped = try train(unit, comm: comm, loaded: loaded, concurrent: concurrent)
    }
    let queue = plan.queuedUnits
    var position = 0
    while !stopped {
      // Rank 0 claims the next unit this group can train; its ranks learn which (or none).
      var claimed = -1
      if comm.rank == 0 && !stop.isSet {
        while position < queue.count && claimed < 0 {
          let i = position
          position += 1
          if queue[i].groups.contains(group.index), try counters.next(i) == 0 { claimed = i }
        }
      }
      var decision = [Double(claimed), stop.isSet ? 1 : 0]
      if comm.size > 1 { try comm.allreduce(&decision, .max) }
      if decision[1] > 0 { return true }
      guard decision[0] >= 0 else { break }
      let unit = queue[Int(decision[0])]
      if comm.rank == 0 {
        emit(
          .claimed(
            group: group.index, adapters: unit.adapters, position: Int(decision[0]) + 1, queued: queue.count))
      }
      let placement = UnitPlacement(
        group: group.index, ranks: ranks,
        placement: (unit.adapters.count > 1 ? Placement.fused : .shared).rawValue,
        queued: true, adapters: unit.adapters)
      stopped = try train(placement, comm: comm, loaded: loaded, concurrent: concurrent)
    }
    return stopped
  }

  /// The plan of one of the job's adapters: its settings on the job's model, resumed from
  /// its own checkpoints when an earlier run left some (`resume: auto`).
  public func plan(for adapter: AdapterJob) throws -> TrainingPlan {
    var plan = try TrainingPlan(
      adapter.settings.training, model: job.model, name: adapter.name, resume: "auto",
      tokensPerBatch: adapter.settings.tokensPerBatch, sweep: adapter.sweep,
      basePrecision: job.basePrecision, attentionPrecision: job.attentionPrecision)
    plan.chain = job.ancestors(of: adapter).map { .init(name: $0.name, output: $0.output) }
    return plan
  }

  /// Trains the unit's adapters on `comm` (one alone, several fused), or skips them when all
  /// already finished in an earlier run; returns whether training stopped on request.
  func train(_ unit: UnitPlacement, comm: any Communicator, loaded: LoadedModel, concurrent: Bool) throws
    -> Bool
  {
    let adapters = unit.adapters.map { name in job.adapters.first { $0.name == name }! }
    let fused = unit.placement == Placement.fused.rawValue || adapters.count > 1
    let plans = try adapters.map(plan(for:))
    // Rank 0 alone may see the outputs (only it writes them); its ranks follow its verdict.
    var finished = [comm.rank == 0 && plans.allSatisfy(\.isFinished) ? 1.0 : 0]
    if comm.size > 1 { try comm.allreduce(&finished, .max) }
    if finished[0] > 0 {
      if comm.rank == 0 {
        for (adapter, plan) in zip(adapters, plans) {
          let ref = AdapterRef(
            name: adapter.name, fused: fused, totalSteps: plan.options.steps,
            output: adapter.output, concurrent: concurrent)
          emit(.skipped(ref, step: nil, detail: nil))
        }
      }
      return false
    }
    if plans.count == 1 && plans[0].rankLadder != nil {
      var search = RankSearch(
        plan: plans[0], loaded: loaded, communicator: comm, stop: stop, checkEvery: 0, emit: emit)
      (search.placement, search.concurrent) = (unit, concurrent)
      if case .stopped = try search.execute().ending { return true }
      return false
    }
    var run = UnitRun(plans: plans, loaded: loaded, communicator: comm, fused: fused, stop: stop, emit: emit)
    run.concurrent = concurrent
    run.placement = unit
    if case .stopped = try run.execute() { return true }
    return false
  }
}

/// An error `JobRunner.failed` was already called with (where the level's collective
/// resources were still held); `execute` throws the error itself on.
private struct Reported: Error {
  var error: any Error
}
