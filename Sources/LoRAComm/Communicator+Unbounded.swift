extension Communicator {
  /// Runs `body`, whose collectives wait for other rank groups to finish their own work (a
  /// job's groups meet at the end of a level after training for different lengths of time),
  /// without the collective watchdog's bound: such a wait is planned, not a stall. A rank that
  /// dies meanwhile is still noticed by the ranks that train with it, whose collectives stay
  /// bounded, and they end the job.
  public func unbounded<T>(_ body: () throws -> T) rethrows -> T {
    guard let mpi = self as? MPICommunicator, let watchdog = mpi.watchdog else { return try body() }
    mpi.watchdog = nil
    defer { mpi.watchdog = watchdog }
    return try body()
  }
}
