import Dispatch
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// SIGTERM (and SIGUSR2) delivered to a handler on a queue instead of ending the process:
/// the trainer finishes its update, writes a checkpoint and exits with 143 (128 + SIGTERM),
/// so a batch system's requeued job resumes where it stopped. SIGUSR2 is there for jobs
/// under `mpirun`: Open MPI 4 forwards SIGUSR1/2 to every rank at once, while a SIGTERM to
/// mpirun reaches the ranks only after its kill timeout, followed by SIGKILL.
enum TerminationSignal {
  /// Installs `handler` for SIGTERM and SIGUSR2; keep the returned sources alive while it
  /// should apply.
  static func install(_ handler: @escaping @Sendable () -> Void) -> [any DispatchSourceSignal] {
    [SIGTERM, SIGUSR2].map { number in
      signal(number, SIG_IGN)
      let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
      source.setEventHandler(handler: handler)
      source.resume()
      return source
    }
  }
}
