import LoRAComm
import LoRAKernels
import LoRARun

/// What `doctor` found, gathered on rank 0; encoded as-is for `--json`.
struct DoctorReport: Codable, Equatable {
  /// What one rank measured about itself.
  struct RankInfo: Codable, Equatable {
    var rank: Int
    var host: String
    var processID: Int32
    var cpus: Int
    var memoryGiB: Double
    var blasCore: String
    var blasThreads: Int
    var blasThreading: String
    /// The kernel OpenBLAS chose itself when swift-lora-dist replaced it with `blasCore`.
    var blasCoreReplaced: String?
    /// The CPU's widest vector extensions ("avx512", "avx2+fma", …).
    var cpuFeatures: String
    /// Largest relative error of sgemm against a double-precision product.
    var sgemmError: Double
    /// sgemm GFLOP/s with this rank measuring while the others wait.
    var sgemmAloneGFLOPs: Double
    /// sgemm GFLOP/s with every rank measuring at the same time.
    var sgemmTogetherGFLOPs: Double
    /// The bf16 frozen products' path here: oneDNN's kernel and whether the CPU multiplies
    /// bf16 natively, emulates it, or has no bf16 products ("unavailable: …").
    var bf16Path: String?
    /// oneDNN bf16 GFLOP/s on the sgemm figures' product, this rank alone; nil without bf16.
    var bf16AloneGFLOPs: Double?
    var model: ModelAccess?
    var checks: [CollectiveCheckResult]
    /// The CPUs this rank may run on: affinity, cores, NUMA domains, quota.
    var topology: CPUTopology? = nil
  }

  /// One row of the all-reduce table.
  struct AllreduceRow: Codable, Equatable {
    var bytes: Int
    var iterations: Int
    var microseconds: Double
    var algorithmGBps: Double
    var busGBps: Double
  }

  var version: String
  var backend: String
  var mpiLibrary: String?
  var worldSize: Int
  var hostCount: Int
  /// The product the sgemm figures time, "M×N×K".
  var sgemmShape: String
  var ranks: [RankInfo]
  var allreduce: [AllreduceRow]
  /// Things that stop training from working (unreadable model, failed collective).
  var problems: [String]
  /// Things that make training slower than it could be.
  var warnings: [String]
  var ready: Bool { problems.isEmpty }
  var verdict: String
}

extension DoctorReport {
  /// Judges the gathered facts: problems, warnings and the one-line verdict.
  static func assess(
    version: String, backend: String, mpiLibrary: String?, sgemmShape: String,
    ranks: [RankInfo], allreduce: [AllreduceRow]
  ) -> DoctorReport {
    var problems: [String] = []
    var warnings: [String] = []
    let hosts = Dictionary(grouping: ranks, by: \.host)

    for info in ranks {
      if let model = info.model, let error = model.error {
        problems.append("rank \(info.rank) on \(info.host): \(error)")
      }
    }
    let checkNames = ranks.first?.checks.map(\.name) ?? []
    for name in checkNames {
      let failing = ranks.compactMap { info in
        info.checks.first { $0.name == name && !$0.passed }.map { "rank \(info.rank): \($0.detail)" }
      }
      if !failing.isEmpty {
        problems.append("collective check '\(name)' failed (\(failing.joined(separator: "; ")))")
      }
    }
    for (host, members) in hosts.sorted(by: { $0.key < $1.key }) {
      let threads = members.reduce(0) { $0 + $1.blasThreads }
      // The CPUs the ranks may use between them (their affinity), else the machine's count.
      let allowed = Set(members.flatMap { $0.topology?.allowed ?? [] })
      let cpus = allowed.isEmpty ? (members.map(\.cpus).max() ?? 1) : allowed.count
      if threads > cpus {
        warnings.append(
          "\(host) runs \(members.count) rank(s) with \(threads) BLAS threads in all on \(cpus) \(allowed.isEmpty ? "" : "allowed ")CPUs; "
            + "set OPENBLAS_NUM_THREADS=\(max(1, cpus / members.count)) per rank")
      }
      warnings += Self.sharedCores(host: host, members)
    }
    for info in ranks where info.sgemmError > 1e-4 {
      problems.append(
        "rank \(info.rank) on \(info.host): sgemm with the '\(info.blasCore)' kernel is wrong "
          + "(relative error \(info.sgemmError)); unset OPENBLAS_CORETYPE or choose an older kernel")
    }
    let slowKernel = ranks.filter {
      BLAS.suggestedCoreType(current: $0.blasCore, features: $0.cpuFeatures) != nil
    }
    if let first = slowKernel.first,
      let suggestion = BLAS.suggestedCoreType(current: first.blasCore, features: first.cpuFeatures)
    {
      warnings.append(
        "OpenBLAS did not recognise the CPU of rank(s) \(slowKernel.map { String($0.rank) }.joined(separator: ", ")) "
          + "and uses its generic '\(first.blasCore)' kernel although the CPU has \(first.cpuFeatures); "
          + "try OPENBLAS_CORETYPE=\(suggestion) and run doctor again (it checks the kernel's results)")
    }
    if Set(ranks.map(\.blasCore)).count > 1 {
      warnings.append(
        "ranks use different BLAS kernels (\(Set(ranks.map(\.blasCore)).sorted().joined(separator: ", "))); the slowest sets the pace"
      )
    }
    if ranks.count > 1 {
      let slowed = ranks.filter { $0.sgemmTogetherGFLOPs < 0.7 * $0.sgemmAloneGFLOPs }
      if !slowed.isEmpty {
        warnings.append(
          "sgemm drops below 70% of its solo speed when all ranks compute together on rank(s) "
            + "\(slowed.map { String($0.rank) }.joined(separator: ", ")): cores are shared or oversubscribed")
      }
    }

    let total = ranks.reduce(0) { $0 + $1.sgemmTogetherGFLOPs }
    let perRank = ranks.isEmpty ? 0 : total / Double(ranks.count)
    var facts =
      "\(ranks.count) rank(s) on \(hosts.count) host(s), sgemm \(format(perRank, 1)) GFLOP/s per rank (\(format(total, 1)) in all)"
    if let row = allreduce.first(where: { $0.bytes >= 1 << 20 }) ?? allreduce.last, ranks.count > 1 {
      facts += ", all-reduce of \(formatBytes(row.bytes)) in \(formatDuration(row.microseconds))"
    }
    let verdict: String
    if let first = problems.first {
      verdict = "NOT READY: \(first)" + (problems.count > 1 ? " (and \(problems.count - 1) more)" : "")
    } else if !warnings.isEmpty {
      verdict = "READY, with \(warnings.count) warning(s): \(facts)"
    } else {
      verdict = "READY: \(facts)"
    }
    return DoctorReport(
      version: version, backend: backend, mpiLibrary: mpiLibrary, worldSize: ranks.count,
      hostCount: hosts.count, sgemmShape: sgemmShape, ranks: ranks, allreduce: allreduce,
      problems: problems, warnings: warnings, verdict: verdict)
  }

  /// The plain-text report rank 0 prints.
  var text: String {
    var lines: [String] = []
    lines.append(
      "swift-lora-dist \(version) doctor: \(worldSize) rank(s) on \(hostCount) host(s), backend \(backend)")
    if let mpiLibrary { lines.append("MPI: \(mpiLibrary)") }
    lines.append("")
    lines.append(
      "sgemm \(sgemmShape) in GFLOP/s: 'alone' with the other ranks idle, 'together' with all ranks at once")
    var table: [[String]] = [
      ["rank", "host", "cpus", "mem GiB", "BLAS core", "threads", "alone", "together", "model"]
    ]
    for info in ranks {
      let model: String
      if let access = info.model {
        model = access.error == nil ? "ok (\(access.summary))" : "FAILED"
      } else {
        model = "-"
      }
      table.append([
        String(info.rank), info.host, String(info.cpus), format(info.memoryGiB, 1),
        info.blasCore + (info.blasCoreReplaced == nil ? "" : "*"),
        "\(info.blasThreads) \(info.blasThreading)", format(info.sgemmAloneGFLOPs, 1),
        format(info.sgemmTogetherGFLOPs, 1), model,
      ])
    }
    lines += renderTable(table, rightAligned: [0, 2, 3, 6, 7])
    for info in ranks {
      if let topology = info.topology { lines.append("rank \(info.rank): \(topology.summary)") }
    }
    for info in ranks {
      guard let path = info.bf16Path else { continue }
      lines.append(
        "rank \(info.rank): bf16 frozen products: \(path)"
          + (info.bf16AloneGFLOPs.map { ", \(format($0, 1)) GFLOP/s alone" } ?? ""))
    }
    if let replaced = ranks.first(where: { $0.blasCoreReplaced != nil }) {
      lines.append(
        "* chosen by swift-lora-dist: OpenBLAS picked its '\(replaced.blasCoreReplaced ?? "")' kernel, which is "
          + "slower on this CPU (docs/models.md); \(BLAS.coreSelectionVariable)=keep keeps OpenBLAS's choice")
    }
    lines.append("")
    let checks = ranks.first?.checks ?? []
    let failed = problems.filter { $0.hasPrefix("collective check") }.count
    lines.append(
      "collectives (\(backend)): \(checks.count - failed) of \(checks.count) checks passed on every rank")
    if worldSize > 1 {
      lines.append("")
      lines.append("all-reduce, float sum in place, \(worldSize) ranks (time of the slowest rank)")
      var rows: [[String]] = [["size", "time", "alg GB/s", "bus GB/s", "iterations"]]
      for row in allreduce {
        rows.append([
          formatBytes(row.bytes), formatDuration(row.microseconds),
          row.bytes >= 1024 ? format(row.algorithmGBps, 2) : "-",
          row.bytes >= 1024 ? format(row.busGBps, 2) : "-", String(row.iterations),
        ])
      }
      lines += renderTable(rows, rightAligned: [0, 1, 2, 3, 4])
    } else {
      lines.append("all-reduce: one rank, nothing to measure (run under mpirun -np N to test the network)")
    }
    if !problems.isEmpty {
      lines.append("")
      lines.append("problems:")
      lines += problems.map { "  - \($0)" }
    }
    if !warnings.isEmpty {
      lines.append("")
      lines.append("warnings:")
      lines += warnings.map { "  - \($0)" }
    }
    lines.append("")
    lines.append("verdict: \(verdict)")
    return lines.joined(separator: "\n")
  }
}

/// Columns padded to their widest cell, two spaces apart.
func renderTable(_ rows: [[String]], rightAligned: Set<Int>) -> [String] {
  let columns = rows.map(\.count).max() ?? 0
  let widths = (0..<columns).map { c in rows.map { c < $0.count ? $0[c].count : 0 }.max() ?? 0 }
  return rows.map { row in
    row.enumerated().map { c, cell in
      let pad = String(repeating: " ", count: widths[c] - cell.count)
      return rightAligned.contains(c) ? pad + cell : cell + pad
    }.joined(separator: "  ").trimmingTrailingSpaces()
  }
}

extension String {
  fileprivate func trimmingTrailingSpaces() -> String {
    var s = self
    while s.last == " " { s.removeLast() }
    return s
  }
}

func formatDuration(_ microseconds: Double) -> String {
  if microseconds < 1000 { return "\(format(microseconds, microseconds < 10 ? 2 : 1)) µs" }
  if microseconds < 1_000_000 { return "\(format(microseconds / 1000, 2)) ms" }
  return "\(format(microseconds / 1_000_000, 2)) s"
}

extension DoctorReport {
  /// Ranks of one host bound to CPUs that overlap (each bound to fewer than all online
  /// CPUs, and sharing some): they compete for those cores.
  static func sharedCores(host: String, _ members: [RankInfo]) -> [String] {
    let bound = members.compactMap { info in
      info.topology.flatMap { $0.allowed.count < $0.online.count ? (info.rank, Set($0.allowed)) : nil }
    }
    var warnings: [String] = []
    for (i, first) in bound.enumerated() {
      for second in bound.dropFirst(i + 1) {
        let shared = first.1.intersection(second.1)
        guard !shared.isEmpty else { continue }
        warnings.append(
          "ranks \(first.0) and \(second.0) on \(host) are bound to the same CPU(s) \(shared.sorted().map(String.init).joined(separator: ","))"
            + "; bind each rank to cores of its own (mpirun --bind-to core, launch/run does by default)")
      }
    }
    return warnings
  }
}
