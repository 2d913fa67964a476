import LoRAComm
import LoRACoordinator
import LoRARun
import LoRATraining

/// `train --jobs FILE`: the job run by the library (`JobRunner`), its events rendered here.
struct JobRun {
  let job: JobFile
  let progress: Progress
  let stop: StopRequest
  /// `--numa-copies`: one base per NUMA domain.
  var numaCopies = false

  /// Runs the job on this rank of `world`; returns whether the job stopped on request.
  func execute(world: any Communicator) throws -> Bool {
    let progress = self.progress
    var runner = JobRunner(job: job, stop: stop, emit: { progress.render($0) })
    runner.failed = { error in Ranks.abortOnError(error, world: world) }
    runner.numaCopies = numaCopies
    if numaCopies && world.rank == 0 { Ranks.note(NUMACopies.note(topology: .current())) }
    return try runner.execute(world: world)
  }
}
