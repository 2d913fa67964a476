import ArgumentParser
import Foundation
import LoRAComm

/// Starting and ending the group of ranks a command runs on.
enum Ranks {
  /// The world communicator: MPI when an MPI launcher started this process, else one rank.
  static func world() throws -> any Communicator {
    if MPIEnvironment.launchedByMPI(environment: ProcessInfo.processInfo.environment) {
      return try MPICommunicator.world()
    }
    return LocalCommunicator.single()
  }

  /// Runs `body` on this rank. On success MPI is finalised; when the body throws, the error
  /// is written to standard error with this rank's number and, in a multi-rank MPI job,
  /// the whole job is aborted so no rank waits forever in a collective.
  static func run<Result>(_ body: (any Communicator) throws -> Result) throws -> Result {
    let comm = try world()
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
  static func threads<Result: Sendable>(
    _ ranks: Int, _ body: @escaping @Sendable (LocalCommunicator) throws -> Result
  ) throws -> [Result] {
    try refuseUnderMPI()
    return try LocalCommunicator.run(ranks: ranks, body)
  }

  /// Thread-ranks (`--local-ranks`) are refused under an MPI launcher, where ranks are
  /// processes; call it before loading what the thread-ranks would share.
  static func refuseUnderMPI() throws {
    if MPIEnvironment.launchedByMPI(environment: ProcessInfo.processInfo.environment) {
      throw ValidationError("--local-ranks runs ranks as threads; do not combine it with mpirun")
    }
  }
}
