import Foundation

/// The CPUs a process may run on, as Linux describes them: the online CPUs, the ones this
/// process's affinity allows (a launcher's binding, `taskset`, a cgroup's cpuset), how they
/// group into physical cores (SMT siblings) and NUMA domains, and a cgroup CPU quota. What
/// `doctor` shows so that imbalance can be told from a shared core or a crowded node.
public struct CPUTopology: Codable, Equatable, Sendable {
  /// CPUs the kernel has online (`/sys/devices/system/cpu/online`).
  public var online: [Int]
  /// CPUs this process may run on (its affinity, /proc/self/status).
  public var allowed: [Int]
  /// The allowed CPUs by physical core: each core's SMT siblings among them.
  public var cores: [[Int]]
  /// The allowed CPUs by NUMA domain (one domain when the machine shows none).
  public var numaDomains: [[Int]]
  /// A cgroup v2 CPU quota in CPUs (`cpu.max`), if one is set.
  public var quotaCPUs: Double?

  public init(online: [Int], allowed: [Int], cores: [[Int]], numaDomains: [[Int]], quotaCPUs: Double?) {
    self.online = online
    self.allowed = allowed
    self.cores = cores
    self.numaDomains = numaDomains
    self.quotaCPUs = quotaCPUs
  }

  /// Physical cores this process can keep busy at once: its allowed cores, fewer under a quota.
  public var usableCores: Int {
    let quota = quotaCPUs.map { max(1, Int($0.rounded(.down))) } ?? Int.max
    return max(1, min(cores.count, quota))
  }

  /// One line: "2 of 2 online CPUs allowed: 2 cores × 1 thread, 1 NUMA domain, no CPU quota".
  public var summary: String {
    let threads = Set(cores.map(\.count)).sorted().map(String.init).joined(separator: "/")
    let quota = quotaCPUs.map { "a CPU quota of \(String(format: "%.2f", $0))" } ?? "no CPU quota"
    return
      "\(allowed.count) of \(online.count) online CPUs allowed: \(cores.count) core(s) × \(threads) thread(s), "
      + "\(numaDomains.count) NUMA domain(s), \(quota)"
  }

  /// The topology of this process now.
  public static func current() -> CPUTopology {
    let online =
      read("/sys/devices/system/cpu/online").map(parseList)
      ?? Array(0..<ProcessInfo.processInfo.processorCount)
    let allowed = affinity() ?? online
    var cores: [[Int]] = []
    var seen = Set<Int>()
    for cpu in allowed where !seen.contains(cpu) {
      let siblings =
        read("/sys/devices/system/cpu/cpu\(cpu)/topology/thread_siblings_list").map(parseList) ?? [cpu]
      let core = siblings.filter { allowed.contains($0) }
      cores.append(core.isEmpty ? [cpu] : core)
      seen.formUnion(core + [cpu])
    }
    var domains: [[Int]] = []
    let nodes = (try? FileManager.default.contentsOfDirectory(atPath: "/sys/devices/system/node")) ?? []
    for node in nodes.filter({ $0.hasPrefix("node") && Int($0.dropFirst(4)) != nil }).sorted(by: {
      Int($0.dropFirst(4))! < Int($1.dropFirst(4))!
    }) {
      let cpus = (read("/sys/devices/system/node/\(node)/cpulist").map(parseList) ?? []).filter(
        allowed.contains)
      if !cpus.isEmpty { domains.append(cpus) }
    }
    return CPUTopology(
      online: online, allowed: allowed, cores: cores, numaDomains: domains.isEmpty ? [allowed] : domains,
      quotaCPUs: read("/sys/fs/cgroup/cpu.max").flatMap(parseQuota))
  }

  /// A Linux CPU list such as "0-3,8,10-11" as its CPUs; malformed parts are skipped.
  public static func parseList(_ text: String) -> [Int] {
    var cpus: [Int] = []
    for part in text.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ",") {
      let bounds = part.split(separator: "-").map { Int($0.trimmingCharacters(in: .whitespaces)) }
      if bounds.count == 1, let one = bounds[0] {
        cpus.append(one)
      } else if bounds.count == 2, let low = bounds[0], let high = bounds[1], low <= high {
        cpus.append(contentsOf: low...high)
      }
    }
    return Array(Set(cpus)).sorted()
  }

  /// cgroup v2's `cpu.max` ("QUOTA PERIOD", or "max PERIOD" for none) as CPUs.
  public static func parseQuota(_ text: String) -> Double? {
    let fields = text.split(whereSeparator: \.isWhitespace)
    guard fields.count == 2, let quota = Double(fields[0]), let period = Double(fields[1]), period > 0 else {
      return nil
    }
    return quota / period
  }

  static func read(_ path: String) -> String? { try? String(contentsOfFile: path, encoding: .utf8) }

  /// The CPUs of this process's affinity mask (`Cpus_allowed_list` of /proc/self/status),
  /// nil where Linux does not say.
  static func affinity() -> [Int]? {
    guard let status = read("/proc/self/status") else { return nil }
    for line in status.split(separator: "\n") where line.hasPrefix("Cpus_allowed_list:") {
      let cpus = parseList(String(line.dropFirst("Cpus_allowed_list:".count)))
      return cpus.isEmpty ? nil : cpus
    }
    return nil
  }
}
