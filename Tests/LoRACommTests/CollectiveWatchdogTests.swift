import Foundation
import Testing

@testable import LoRAComm

/// Records the stalls a watchdog reports.
final class StallLog: @unchecked Sendable {
  private let lock = NSLock()
  private var stalls: [CollectiveWatchdog.Stall] = []
  func add(_ stall: CollectiveWatchdog.Stall) { lock.withLock { stalls.append(stall) } }
  var all: [CollectiveWatchdog.Stall] { lock.withLock { stalls } }
}

@Suite struct CollectiveWatchdogTests {
  @Test func reportsOneStallOnceTheLimitPasses() throws {
    let log = StallLog()
    let watchdog = CollectiveWatchdog(timeout: 0.2) { log.add($0) }
    watchdog.enter("MPI_Bcast")
    watchdog.leave()
    watchdog.enter("MPI_Allreduce")
    Thread.sleep(forTimeInterval: 0.8)
    let stalls = log.all
    #expect(stalls.count == 1)
    #expect(stalls.first?.call == "MPI_Allreduce")
    #expect(stalls.first?.sequence == 2)
    #expect((stalls.first?.waited ?? 0) >= 0.2)
    // It fired once and stopped watching: a later stall is not reported again.
    watchdog.leave()
    watchdog.enter("MPI_Barrier")
    Thread.sleep(forTimeInterval: 0.5)
    #expect(log.all.count == 1)
  }

  @Test func staysQuietWhileEveryCollectiveEndsInTime() throws {
    let log = StallLog()
    let watchdog = CollectiveWatchdog(timeout: 0.3) { log.add($0) }
    // Many short collectives over twice the limit in all: only one wait counts at a time.
    for _ in 0..<12 {
      watchdog.enter("MPI_Allreduce")
      Thread.sleep(forTimeInterval: 0.05)
      watchdog.leave()
    }
    // Idle between collectives (rank 0 writing a checkpoint) is not a stall either.
    Thread.sleep(forTimeInterval: 0.6)
    #expect(log.all.isEmpty)
  }

  @Test func aLocalCommunicatorRunsUnboundedBodiesAsTheyAre() throws {
    let comm = LocalCommunicator.single()
    var values = [3.0]
    try comm.unbounded { try comm.allreduce(&values, .max) }
    #expect(values == [3])
  }
}
