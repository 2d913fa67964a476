import Testing

@testable import LoRAComm

/// Linux's CPU lists and cgroup quota as `doctor` reads them, and this process's topology.
@Suite struct CPUTopologyTests {
  @Test func cpuListsAndQuotasParse() {
    #expect(CPUTopology.parseList("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11])
    #expect(CPUTopology.parseList("5") == [5])
    #expect(CPUTopology.parseList("") == [])
    #expect(CPUTopology.parseList("3-1,x,2") == [2])  // malformed parts skipped
    #expect(CPUTopology.parseQuota("200000 100000\n") == 2)
    #expect(CPUTopology.parseQuota("max 100000") == nil)
    #expect(CPUTopology.parseQuota("garbage") == nil)
  }

  @Test func thisProcessesTopologyIsConsistent() {
    let t = CPUTopology.current()
    #expect(!t.allowed.isEmpty && Set(t.allowed).isSubset(of: Set(t.online)))
    #expect(t.cores.flatMap { $0 }.sorted() == t.allowed)
    #expect(t.numaDomains.flatMap { $0 }.sorted() == t.allowed)
    #expect(t.usableCores >= 1 && t.usableCores <= t.cores.count)
    #expect(t.summary.contains("\(t.allowed.count) of \(t.online.count) online CPUs allowed"))
    let quota = CPUTopology(
      online: [0, 1, 2, 3], allowed: [0, 1, 2, 3], cores: [[0], [1], [2], [3]],
      numaDomains: [[0, 1, 2, 3]], quotaCPUs: 1.5)
    #expect(quota.usableCores == 1)
  }
}
