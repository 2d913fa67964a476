import LoRAComm
import LoRACoordinator
import LoRARun
import LoRATraining

/// `train --jobs FILE`: the job run by the library (`JobRunner`), its events rendered here.
struct JobRun {
  let job: JobFile
  let progress: Progress
  let stop: StopRequest

  /// Runs the job on this rank of `world`; returns whether the job stopped on request.
  func execute(world: any Communicator) throws -> Bool {
    let progress = self.progress
    var runner = JobRunner(job: job, stop: stop, emit: { progress.render($0) })
    runner.failed = { error in Ranks.abortOnError(error, world: world) }
    return try runner.execute(world: world)
  }
}
