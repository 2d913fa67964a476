import Foundation
import Testing

@testable import LoRAComm

/// Thread-ranks on cores of their own, warnings that name both numbers, a refused binding
/// that is reported and survived, and one base copy per NUMA domain.
@Suite struct ThreadPlacementTests {
  /// Two NUMA domains of two cores with two SMT threads each: CPUs 0/4, 1/5 in domain 0,
  /// 2/6, 3/7 in domain 1.
  let twoDomains = CPUTopology(
    online: Array(0..<8), allowed: Array(0..<8), cores: [[0, 4], [1, 5], [2, 6], [3, 7]],
    numaDomains: [[0, 1, 4, 5], [2, 3, 6, 7]], quotaCPUs: nil)

  @Test func ranksTakeDistinctCoresInTurnFromEachDomainThenSiblings() {
    #expect(twoDomains.spreadCores == [[0, 4], [2, 6], [1, 5], [3, 7]])
    #expect(ThreadPlacement.plan(ranks: 3, threadsPerRank: 1, topology: twoDomains).cpus == [0, 2, 1])
    #expect(
      ThreadPlacement.plan(ranks: 6, threadsPerRank: 1, topology: twoDomains).cpus == [0, 2, 1, 3, 4, 6])
    // Several kernel threads each: a rank's thread and its kernel threads on cores of one
    // domain, first CPUs of cores before siblings.
    let pooled = ThreadPlacement.plan(ranks: 2, threadsPerRank: 2, topology: twoDomains)
    #expect(pooled.rankCPUs == [[0, 1], [2, 3]] && pooled.cpus == [0, 2], "\(pooled)")
    #expect(pooled.note.contains("rank 1 on CPUs 2,3"), "\(pooled.note)")
    #expect(
      ThreadPlacement.plan(ranks: 2, threadsPerRank: 4, topology: twoDomains).rankCPUs == [
        [0, 1, 2, 3], [4, 5, 6, 7],
      ])
  }

  /// A process a launcher bound to CPUs of its own pins its kernel threads there; an unbound
  /// one does not (other processes may share the node).
  @Test func aBoundProcessPinsItsKernelThreadsToItsOwnCPUs() {
    let bound = CPUTopology(
      online: Array(0..<8), allowed: [2, 3, 6, 7], cores: [[2, 6], [3, 7]], numaDomains: [[2, 3, 6, 7]],
      quotaCPUs: nil)
    #expect(ThreadPlacement.boundProcess(threads: 2, topology: bound) == [2, 3])
    #expect(ThreadPlacement.boundProcess(threads: 3, topology: bound) == [2, 3, 6])
    #expect(ThreadPlacement.boundProcess(threads: 5, topology: bound) == nil)
    #expect(ThreadPlacement.boundProcess(threads: 1, topology: bound) == nil)
    #expect(ThreadPlacement.boundProcess(threads: 2, topology: twoDomains) == nil)
  }

  @Test func moreThreadsThanCPUsIsAWarningNamingBothNumbers() {
    #expect(twoDomains.oversubscription(ranks: 8, threadsPerRank: 1) == nil)
    let many = twoDomains.oversubscription(ranks: 4, threadsPerRank: 4)
    #expect(
      many?.contains("4 rank(s) × 4 thread(s) = 16 threads on 8 usable CPU(s)") == true, "\(many ?? "")")
    #expect(many?.contains("--threads 2") == true)
    let ranks = twoDomains.oversubscription(ranks: 9, threadsPerRank: 1)
    #expect(ranks?.contains("at most 8 rank(s) with --threads 1") == true, "\(ranks ?? "")")
    let plan = ThreadPlacement.plan(ranks: 9, threadsPerRank: 1, topology: twoDomains)
    #expect(plan.cpus == nil && plan.note.contains("9 threads on 8 usable CPU(s)"))
    // A quota of 1.5 CPUs leaves one.
    var quota = twoDomains
    quota.quotaCPUs = 1.5
    #expect(
      quota.oversubscription(ranks: 2, threadsPerRank: 1)?.contains(
        "on 1 usable CPU(s) (8 allowed, a quota of 1.50 CPUs)") == true)
  }

  @Test func aThreadIsPinnedAndARefusedBindingIsAnswerNotACrash() throws {
    let cpu = CPUTopology.current().allowed.last!
    let result = UncheckedResult()
    let thread = Thread {
      result.refused = ThreadPlacement.pinCurrentThread(to: [cpu])
      result.cpus = ThreadPlacement.currentThreadCPUs()
      result.impossible = ThreadPlacement.pinCurrentThread(to: [100_000])
      result.after = ThreadPlacement.currentThreadCPUs()
      result.done.signal()
    }
    thread.start()
    result.done.wait()
    #expect(result.refused == nil)
    #expect(result.cpus == [cpu])
    #expect(result.impossible?.contains("binding threads to CPUs 100000 failed") == true)
    #expect(result.after == [cpu], "a refused binding leaves the thread where it was")
    // This thread was never pinned.
    #expect(ThreadPlacement.currentThreadCPUs().count == CPUTopology.current().allowed.count)
  }

  @Test func numaCopiesSplitTheSharingByDomainAndAreNotedOnOne() throws {
    let one = CPUTopology(
      online: [0, 1], allowed: [0, 1], cores: [[0], [1]], numaDomains: [[0, 1]], quotaCPUs: nil)
    let single = try NUMACopies.sharing(LocalCommunicator.single(), perDomain: true, topology: one, cpus: [0])
    #expect(single.communicator.size == 1 && single.note?.contains("1 NUMA domain") == true)
    #expect(
      try NUMACopies.sharing(LocalCommunicator.single(), perDomain: false, topology: one, cpus: [0]).note
        == nil)
    #expect(twoDomains.domain(of: [2, 6]) == 1 && twoDomains.domain(of: [0, 2]) == nil)
    // Ranks on CPUs 0, 2, 1 and one unbound: domain 0 has two ranks, domain 1 one, the unbound its own group.
    let topology = twoDomains
    let cpus = [[0], [2], [1], Array(0..<8)]
    let sizes = try LocalCommunicator.run(ranks: 4) { comm in
      let sharing = try NUMACopies.sharing(comm, perDomain: true, topology: topology, cpus: cpus[comm.rank])
      let buffer = try sharing.communicator.nodeSharedBuffer(count: 4)
      return [sharing.communicator.size, buffer.filler ? 1 : 0]
    }
    #expect(sizes == [[2, 1], [1, 1], [2, 0], [1, 1]])
  }
}

private final class UncheckedResult: @unchecked Sendable {
  var refused: String?
  var impossible: String?
  var cpus: [Int] = []
  var after: [Int] = []
  let done = DispatchSemaphore(value: 0)
}
