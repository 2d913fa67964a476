import Foundation

/// Bounds how long one rank waits inside a collective. A rank that died, or a host whose
/// network went down, leaves the others blocked in `MPI_Allreduce` for as long as TCP takes
/// to give up (many minutes); the watchdog notices the wait instead and calls `onStall`
/// once, from its own thread, so the command can say where it stalled and end the process.
///
/// The communicator calls `enter` before each collective and `leave` after it; nesting is
/// not needed (collectives do not nest). A wait of `timeout` seconds or more is a stall.
public final class CollectiveWatchdog: @unchecked Sendable {
  /// What stalled: the MPI call, how long it had waited, and the collective's sequence
  /// number on this rank (1 for the first).
  public struct Stall: Sendable, Equatable {
    public var call: String
    public var waited: Double
    public var sequence: Int
  }

  public let timeout: Double
  private let onStall: @Sendable (Stall) -> Void
  private let condition = NSCondition()
  private var call: String?
  private var since = Date()
  private var sequence = 0
  private var fired = false

  /// - Parameters:
  ///   - timeout: seconds one collective may wait (> 0).
  ///   - onStall: called at most once, on the watchdog's thread.
  public init(timeout: Double, onStall: @escaping @Sendable (Stall) -> Void) {
    precondition(timeout > 0, "a watchdog needs a positive timeout")
    self.timeout = timeout
    self.onStall = onStall
    let thread = Thread { [weak self] in
      while let watchdog = self, watchdog.watch() {}
    }
    thread.name = "collective-watchdog"
    thread.start()
  }

  /// A collective `call` starts on this rank.
  public func enter(_ call: String) {
    condition.lock()
    self.call = call
    since = Date()
    sequence += 1
    condition.signal()
    condition.unlock()
  }

  /// The collective returned.
  public func leave() {
    condition.lock()
    call = nil
    condition.unlock()
  }

  /// One look: reports a stall, then waits a while. False once it has fired.
  private func watch() -> Bool {
    condition.lock()
    guard !fired else {
      condition.unlock()
      return false
    }
    var stall: Stall?
    if let call {
      let waited = Date().timeIntervalSince(since)
      if waited >= timeout {
        fired = true
        stall = Stall(call: call, waited: waited, sequence: sequence)
      }
    }
    if stall == nil {
      _ = condition.wait(until: Date().addingTimeInterval(min(1, timeout / 4)))
    }
    condition.unlock()
    if let stall { onStall(stall) }
    return stall == nil
  }
}
