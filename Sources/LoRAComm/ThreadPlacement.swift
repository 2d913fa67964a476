import CAffinity
import Foundation
import LoRAKernels

/// Where the ranks of one process (thread-ranks, `--local-ranks`) run: each rank's thread on
/// its own CPU of those this process may use (distinct cores first, then SMT siblings), so no two ranks share a core and each
/// rank's buffers, allocated and first written by its own thread, sit in that core's memory
/// domain. A rank of several kernel threads takes as many cores, its workers pinned beside it.
/// Pinned only when every thread of every rank has a CPU of its own: otherwise the ranks are
/// left to the scheduler.
public struct ThreadPlacement: Sendable, Equatable {
  /// The CPUs of each rank (rank order): its own thread's first, then one per kernel thread
  /// of its pool; nil: not pinned.
  public var rankCPUs: [[Int]]?
  /// What a user should know: why the ranks are not pinned, or where they are.
  public var note: String

  /// The CPU of each rank's thread (rank order); nil: not pinned.
  public var cpus: [Int]? { rankCPUs?.map { $0[0] } }

  public init(rankCPUs: [[Int]]?, note: String) {
    self.rankCPUs = rankCPUs
    self.note = note
  }

  /// The placement of `ranks` thread-ranks of `threadsPerRank` kernel threads each on
  /// `topology`. One thread each: rank r on the first CPU of core r (then on second SMT
  /// siblings), the cores taken in turn from each NUMA domain so that ranks spread over the
  /// domains' memory. Several: rank r on `threadsPerRank` consecutive cores of one domain
  /// where they fit (the rank's thread, then its kernel threads), first CPUs of cores before
  /// siblings.
  public static func plan(ranks: Int, threadsPerRank: Int, topology: CPUTopology) -> ThreadPlacement {
    if let warning = topology.oversubscription(ranks: ranks, threadsPerRank: threadsPerRank) {
      return ThreadPlacement(rankCPUs: nil, note: warning + "; the ranks are not pinned")
    }
    // First CPUs of distinct cores, then their SMT siblings: spread over the domains for
    // ranks of one thread, domain by domain for ranks of several.
    let order = topology.coresFirst(threadsPerRank == 1 ? topology.spreadCores : topology.coresByDomain)
    let rankCPUs = (0..<ranks).map { Array(order[$0 * threadsPerRank..<($0 + 1) * threadsPerRank]) }
    let note =
      threadsPerRank == 1
      ? "rank threads pinned to CPUs " + rankCPUs.map { String($0[0]) }.joined(separator: ", ")
      : "ranks pinned with their kernel threads: "
        + rankCPUs.enumerated().map {
          "rank \($0.offset) on CPUs \($0.element.map(String.init).joined(separator: ","))"
        }
        .joined(separator: "; ")
    return ThreadPlacement(rankCPUs: rankCPUs, note: note)
  }

  /// The CPUs for the kernel threads of a process that a launcher bound to a set of its own
  /// (fewer CPUs allowed than online): `threads` CPUs of the set, the first CPUs of its cores
  /// before their SMT siblings; nil when the process is not bound (other processes may share
  /// the node), runs one thread, or the set has fewer CPUs than threads.
  public static func boundProcess(threads: Int, topology: CPUTopology) -> [Int]? {
    guard threads > 1, topology.allowed.count < topology.online.count else { return nil }
    let order = topology.coresFirst(topology.coresByDomain)
    return order.count >= threads ? Array(order.prefix(threads)) : nil
  }

  /// Binds the calling thread to `cpus[0]` and its kernel threads to the rest; nil, or why
  /// the platform refused (those threads keep running where the scheduler puts them).
  public static func pinCurrentThread(to cpus: [Int]) -> String? { Parallel.pin(cpus: cpus) }

  /// The CPUs the calling thread may run on now.
  public static func currentThreadCPUs() -> [Int] {
    var cpus = [Int32](repeating: 0, count: 4096)
    let count = sld_thread_cpus(&cpus, Int32(cpus.count))
    return count < 0 ? [] : cpus.prefix(Int(count)).map(Int.init)
  }
}

extension CPUTopology {
  /// The allowed cores, taken in turn from each NUMA domain (domain 0's first core, domain
  /// 1's first core, …, domain 0's second core, …).
  public var spreadCores: [[Int]] {
    let byDomain = numaDomains.map { domain in cores.filter { domain.contains($0[0]) } }
    var result: [[Int]] = []
    for i in 0..<(byDomain.map(\.count).max() ?? 0) {
      for domain in byDomain where i < domain.count { result.append(domain[i]) }
    }
    // Cores of no listed domain (none on Linux) keep their place at the end.
    return result + cores.filter { core in !result.contains(core) }
  }

  /// The CPUs of `cores` with each core's first CPU before any core's second (SMT sibling).
  public func coresFirst(_ cores: [[Int]]) -> [Int] {
    (0..<(cores.map(\.count).max() ?? 0)).flatMap { i in cores.compactMap { i < $0.count ? $0[i] : nil } }
  }

  /// The allowed cores, domain by domain (each domain's cores in order).
  public var coresByDomain: [[Int]] {
    let byDomain = numaDomains.flatMap { domain in cores.filter { domain.contains($0[0]) } }
    return byDomain + cores.filter { core in !byDomain.contains(core) }
  }

  /// CPUs this process can keep busy at once: the allowed ones, fewer under a quota.
  public var usableCPUs: Int {
    let quota = quotaCPUs.map { max(1, Int($0.rounded(.down))) } ?? Int.max
    return max(1, min(allowed.count, quota))
  }

  /// A warning naming both numbers when `ranks` ranks sharing this CPU set, with
  /// `threadsPerRank` kernel threads each, ask for more threads than it has CPUs; nil when
  /// they fit.
  public func oversubscription(ranks: Int, threadsPerRank: Int) -> String? {
    let wanted = ranks * threadsPerRank
    guard wanted > usableCPUs else { return nil }
    let quota = quotaCPUs.map { ", a quota of \(String(format: "%.2f", $0)) CPUs" } ?? ""
    return
      "\(ranks) rank(s) × \(threadsPerRank) thread(s) = \(wanted) threads on \(usableCPUs) usable CPU(s) "
      + "(\(allowed.count) allowed\(quota)): they take turns and every step slows; ask for at most "
      + "\(usableCPUs) in all (here: "
      + (ranks >= usableCPUs
        ? "at most \(usableCPUs) rank(s) with --threads 1)"
        : "--threads \(max(1, usableCPUs / max(ranks, 1))))")
  }
}
