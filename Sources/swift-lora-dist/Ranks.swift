import ArgumentParser
import Foundation
import LoRAComm
import LoRAKernels

/// Starting and ending the group of ranks a command runs on.
enum Ranks {
  /// The world communicator: MPI when an MPI launcher started this process, else one rank.
  static func world() throws -> any Communicator {
    let environment = ProcessInfo.processInfo.environment
    if MPIEnvironment.launchedByMPI(environment: environment) {
      let timeout = try collectiveTimeout(environment)
      let comm = try MPICommunicator.world()
      if comm.size > 1, let timeout { comm.watchdog = watchdog(timeout: timeout, rank: comm.rank) }
      return comm
    }
    return LocalCommunicator.single()
  }

  /// The environment variable that bounds one collective's wait, in seconds (0: no bound).
  static let collectiveTimeoutVariable = "SWIFT_LORA_DIST_COLLECTIVE_TIMEOUT"
  /// Its default: long enough for rank 0's checkpoint writes and validation while the
  /// others wait, short enough that a dead host stops the job within minutes.
  static let defaultCollectiveTimeout = 600.0

  /// The bound on one collective's wait from `environment`; nil when it is 0.
  static func collectiveTimeout(_ environment: [String: String]) throws -> Double? {
    guard let text = environment[collectiveTimeoutVariable] else { return defaultCollectiveTimeout }
    guard let seconds = Double(text), seconds.isFinite, seconds >= 0 else {
      throw ValidationError(
        "\(collectiveTimeoutVariable)=\(text): expected a number of seconds (0 for no bound)")
    }
    return seconds > 0 ? seconds : nil
  }

  /// A watchdog that ends this rank when a collective waits `timeout` seconds: a rank died
  /// or its host is unreachable, and the job should stop (and be restarted) rather than hang.
  static func watchdog(timeout: Double, rank: Int) -> CollectiveWatchdog {
    let host = (try? MPIEnvironment.processorName()) ?? "?"
    return CollectiveWatchdog(timeout: timeout) { stall in
      let message =
        "error on rank \(rank) (host \(host)): \(stall.call) (collective \(stall.sequence) on this rank) "
        + "has waited \(Int(stall.waited)) s, the limit (\(collectiveTimeoutVariable)): another rank has "
        + "died or the network to its host is down; ending this rank so that the job stops instead of "
        + "hanging\n"
      FileHandle.standardError.write(Data(message.utf8))
      _exit(75)
    }
  }

  /// Runs `body` on this rank. On success MPI is finalised; when the body throws, the error
  /// is written to standard error with this rank's number and, in a multi-rank MPI job,
  /// the whole job is aborted so no rank waits forever in a collective.
  static func run<Result>(_ body: (any Communicator) throws -> Result) throws -> Result {
    let comm = try world()
    pinKernelThreadsOfABoundProcess()
    do {
      let result = try body(comm)
      try MPIEnvironment.finalize()
      return result
    } catch {
      abortOnError(error, world: comm)
      try? MPIEnvironment.finalize()
      throw error
    }
  }

  /// In a multi-rank MPI job: writes `error` with this rank's number and aborts every rank,
  /// so none waits forever in a collective; elsewhere nothing.
  static func abortOnError(_ error: any Error, world: any Communicator) {
    guard world.size > 1 && MPIEnvironment.isActive else { return }
    FileHandle.standardError.write(Data("error on rank \(world.rank): \(error)\n".utf8))
    MPIEnvironment.abort(code: 1)
  }

  /// Runs `body` on `ranks` data-parallel ranks as threads of this process (`--local-ranks`);
  /// their results in rank order. Refused under an MPI launcher, where ranks are processes.
  /// With `pin`, each rank's thread is bound to its own CPU when they fit
  /// (`ThreadPlacement`), before it allocates anything; a refused binding is a warning.
  /// Asking for more threads (ranks × `threads`) than the allowed CPUs is a warning too.
  static func threads<Result: Sendable>(
    _ ranks: Int, threads: Int? = nil, pin: Bool = true,
    _ body: @escaping @Sendable (LocalCommunicator) throws -> Result
  ) throws -> [Result] {
    try refuseUnderMPI()
    let topology = CPUTopology.current()
    let perRank = threads ?? BLAS.threads
    if let warning = topology.oversubscription(ranks: ranks, threadsPerRank: perRank) { warn(warning) }
    let placement =
      pin
      ? ThreadPlacement.plan(ranks: ranks, threadsPerRank: perRank, topology: topology)
      : ThreadPlacement(rankCPUs: nil, note: "not pinned (--no-pin)")
    return try LocalCommunicator.run(ranks: ranks) { comm in
      if let cpus = placement.rankCPUs?[comm.rank], let refused = ThreadPlacement.pinCurrentThread(to: cpus) {
        warn("rank \(comm.rank): \(refused); it runs where the scheduler puts it")
      }
      return try body(comm)
    }
  }

  /// A process that a launcher bound to CPUs of its own (`mpirun --map-by slot:PE=T
  /// --bind-to core`, Slurm's `--cpu-bind=cores`) and runs several kernel threads binds each
  /// to its own core of that set; an unbound process leaves them to the scheduler, since other
  /// processes may share the node. A refused binding is a warning.
  static func pinKernelThreadsOfABoundProcess() {
    guard let cpus = ThreadPlacement.boundProcess(threads: Parallel.width, topology: .current()) else {
      return
    }
    if let refused = ThreadPlacement.pinCurrentThread(to: cpus) {
      warn("\(refused); the kernel threads run where the scheduler puts them")
    }
  }

  /// A note on standard error.
  static func note(_ text: String) {
    FileHandle.standardError.write(Data("note: \(text)\n".utf8))
  }

  /// A warning on standard error (the command goes on).
  static func warn(_ text: String) {
    FileHandle.standardError.write(Data("warning: \(text)\n".utf8))
  }

  /// Warns (rank 0) when this node's ranks ask for more kernel threads than the CPUs they
  /// may use: a process the launcher bound to CPUs checks its own `threads` against them,
  /// an unbound one counts every rank of its node (the launcher's local size).
  static func checkThreads(_ threads: Int, world: any Communicator) {
    guard world.rank == 0 else { return }
    let topology = CPUTopology.current()
    let environment = ProcessInfo.processInfo.environment
    let bound = topology.allowed.count < topology.online.count
    let local =
      MPIEnvironment.launchedByMPI(environment: environment) && !bound
      ? ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"].lazy.compactMap {
        environment[$0].flatMap(Int.init)
      }
      .first ?? world.size : 1
    if local == 1 && threads > topology.usableCPUs {
      warn(
        "--threads \(threads) asks for more threads than the \(topology.usableCPUs) usable CPU(s) of this process; "
          + "kernels run on \(min(threads, Parallel.maxWidth))")
    } else if let warning = topology.oversubscription(ranks: local, threadsPerRank: threads) {
      warn("this node's " + warning)
    }
  }

  /// Thread-ranks (`--local-ranks`) are refused under an MPI launcher, where ranks are
  /// processes; call it before loading what the thread-ranks would share.
  static func refuseUnderMPI() throws {
    if MPIEnvironment.launchedByMPI(environment: ProcessInfo.processInfo.environment) {
      throw ValidationError("--local-ranks runs ranks as threads; do not combine it with mpirun")
    }
  }
}
