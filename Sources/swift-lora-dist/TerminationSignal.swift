import Dispatch
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// SIGTERM delivered to a handler on a queue instead of ending the process: the trainer
/// finishes its update, writes a checkpoint and exits with 143 (128 + SIGTERM), so a batch
/// system's requeued job resumes where it stopped.
enum TerminationSignal {
  /// Installs `handler` for SIGTERM; keep the returned source alive while it should apply.
  static func install(_ handler: @escaping @Sendable () -> Void) -> any DispatchSourceSignal {
    signal(SIGTERM, SIG_IGN)
    let source = DispatchSource.makeSignalSource(signal: SIGTERM, queue: .global())
    source.setEventHandler(handler: handler)
    source.resume()
    return source
  }
}
