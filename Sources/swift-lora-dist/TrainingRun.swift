import Foundation
import LoRAComm
import LoRACoordinator
import LoRAKernels
import LoRARun
import LoRATraining

/// One `train` invocation: its plan, checked before anything heavy is loaded, run as a unit
/// of one adapter (`UnitRun`) whose events this process renders.
struct TrainingRun {
  let settings: TrainConfiguration
  var plan: TrainingPlan
  var model: String { plan.model }

  init(_ s: TrainConfiguration) throws {
    settings = s
    if let threads = s.threads, threads < 1 {
      throw ConfigError("threads must be at least 1, got \(threads)")
    }
    do {
      plan = try TrainingPlan(
        s.training, model: s.model, resume: s.resume, overwrite: s.overwrite ?? false,
        force: s.force ?? false,
        checkpointActivations: s.checkpointActivations ?? false, basePrecision: s.basePrecision ?? .auto,
        attentionPrecision: s.attentionPrecision ?? .auto)
    } catch let error as SettingsError {
      // A file's values were checked when it was read (with their lines): this one is a flag's.
      throw ConfigError("--\(error.keyPath[0].replacingOccurrences(of: "_", with: "-")): \(error.message)")
    }
  }

  /// Runs on one rank of `comm`: every rank loads, checks that all agree, and trains its
  /// slice of each batch; rank 0 alone prints, writes metrics, checkpoints, the adapter and
  /// the report.
  func execute(
    progress: Progress, communicator comm: any Communicator = LocalCommunicator.single(),
    loaded preloaded: LoadedModel? = nil, stop: StopRequest = StopRequest()
  ) throws -> FusedTrainer.Ending {
    if let threads = settings.threads { BLAS.threads = threads }
    let loaded: LoadedModel
    if let preloaded {
      loaded = preloaded
      if settings.numaCopies == true, comm.rank == 0 {
        Ranks.note(NUMACopies.note(topology: .current()))
      }
    } else {
      let sharing = try NUMACopies.sharing(
        comm, perDomain: settings.numaCopies ?? false, topology: .current(),
        cpus: ThreadPlacement.currentThreadCPUs())
      if let note = sharing.note, comm.rank == 0 { Ranks.note(note) }
      loaded = try LoadedModel(
        path: plan.model, communicator: sharing.communicator, precision: plan.basePrecision,
        attention: plan.attentionPrecision)
    }
    // A failure on one rank (rank 0's checkpoint on a full disk, a damaged checkpoint to
    // resume from) ends the job here, while the base model is still held: releasing its
    // node-shared window is collective and would wait forever for the ranks still training.
    return try withExtendedLifetime(loaded) {
      do {
        return try train(progress: progress, communicator: comm, loaded: loaded, stop: stop)
      } catch {
        Ranks.abortOnError(error, world: comm)
        throw error
      }
    }
  }

  /// Trains on the loaded base.
  private func train(
    progress: Progress, communicator comm: any Communicator, loaded: LoadedModel, stop: StopRequest
  ) throws -> FusedTrainer.Ending {
    if plan.rankLadder != nil {
      let search = RankSearch(
        plan: plan, loaded: loaded, communicator: comm, stop: stop, checkEvery: settings.checkEvery ?? 0,
        emit: { progress.render($0) })
      return try search.execute().ending
    }
    let unit = UnitRun(
      plans: [plan], loaded: loaded, communicator: comm, fused: false, stop: stop,
      checkEvery: settings.checkEvery ?? 0, emit: { progress.render($0) })
    return try unit.execute()
  }
}
