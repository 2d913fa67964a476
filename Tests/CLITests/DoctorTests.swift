import Foundation
import LoRAComm
import LoRARun
import Testing

@testable import swift_lora_dist

/// A temporary folder removed when the test ends.
final class TemporaryFolder {
  let path: String
  init() throws {
    path = NSTemporaryDirectory() + "swift-lora-dist-test-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
  }
  deinit { try? FileManager.default.removeItem(atPath: path) }
  func file(_ name: String, _ bytes: [UInt8]) throws -> String {
    let file = path + "/" + name
    try Data(bytes).write(to: URL(fileURLWithPath: file))
    return file
  }
}

@Suite struct ModelAccessTests {
  @Test func missingPathNamesThePath() {
    let access = ModelAccess.check("/nonexistent/model.gguf")
    #expect(access.error == "model path /nonexistent/model.gguf does not exist")
  }

  @Test func recognisesGGUFByItsMagic() throws {
    let folder = try TemporaryFolder()
    let path = try folder.file(
      "m.gguf", Array("GGUF".utf8) + [3, 0, 0, 0] + [UInt8](repeating: 0, count: 24))
    let access = ModelAccess.check(path)
    #expect(access.error == nil)
    #expect(access.format == "GGUF v3" && access.bytes == 32)
  }

  @Test func rejectsOtherFiles() throws {
    let folder = try TemporaryFolder()
    let short = ModelAccess.check(try folder.file("short.gguf", [0x47]))
    #expect(short.error?.contains("shorter than any model header") == true)
    let text = ModelAccess.check(try folder.file("notes.txt", Array("hello, world".utf8)))
    #expect(text.error?.contains("neither GGUF") == true)
  }

  @Test func checksHuggingFaceFolders() throws {
    let folder = try TemporaryFolder()
    #expect(ModelAccess.check(folder.path).error?.contains("has no readable config.json") == true)
    _ = try folder.file("config.json", Array("{}".utf8))
    #expect(ModelAccess.check(folder.path).error?.contains("has no .safetensors files") == true)
    _ = try folder.file("model.safetensors", [UInt8](repeating: 1, count: 10))
    let access = ModelAccess.check(folder.path)
    #expect(access.error == nil && access.format == "Hugging Face folder" && access.bytes == 10)
  }
}

@Suite struct DoctorAssessmentTests {
  func rank(_ r: Int, host: String = "node1", threads: Int = 1, cpus: Int = 2, core: String = "Haswell")
    -> DoctorReport.RankInfo
  {
    DoctorReport.RankInfo(
      rank: r, host: host, processID: 100, cpus: cpus, memoryGiB: 8, blasCore: core, blasThreads: threads,
      blasThreading: "pthreads", blasCoreReplaced: nil, cpuFeatures: "avx2+fma", sgemmError: 1e-7,
      sgemmAloneGFLOPs: 70,
      sgemmTogetherGFLOPs: 68, model: nil,
      checks: [CollectiveCheckResult(name: "barrier", passed: true, detail: "")])
  }

  @Test func healthyClusterIsReady() {
    let report = DoctorReport.assess(
      version: "t", backend: "mpi", mpiLibrary: nil, sgemmShape: "1×1×1",
      ranks: [rank(0), rank(1, host: "node2")],
      allreduce: [.init(bytes: 1 << 20, iterations: 10, microseconds: 250, algorithmGBps: 4, busGBps: 4)])
    #expect(report.ready && report.warnings.isEmpty)
    #expect(report.verdict.hasPrefix("READY: 2 rank(s) on 2 host(s)"))
    #expect(report.verdict.contains("all-reduce of 1 MiB in 250.0 µs"))
    #expect(report.text.contains("verdict: READY"))
  }

  @Test func eachRanksBF16PathIsReported() {
    var native = rank(0)
    native.bf16Path = "native (oneDNN 2.6.3, avx512_core_bf16, brg:avx512_core_bf16)"
    native.bf16AloneGFLOPs = 218.4
    var none = rank(1, host: "node2")
    none.bf16Path = "unavailable (oneDNN 2.6.3, avx2: bf16 products need AVX-512)"
    let text = DoctorReport.assess(
      version: "t", backend: "mpi", mpiLibrary: nil, sgemmShape: "", ranks: [native, none], allreduce: []
    ).text
    #expect(
      text.contains(
        "rank 0: bf16 frozen products: native (oneDNN 2.6.3, avx512_core_bf16, brg:avx512_core_bf16), "
          + "218.4 GFLOP/s alone"))
    #expect(
      text.contains(
        "rank 1: bf16 frozen products: unavailable (oneDNN 2.6.3, avx2: bf16 products need AVX-512)"))
  }

  /// Two ranks of a host bound to overlapping CPUs are named; bound apart, or unbound, they are not.
  @Test func ranksBoundToTheSameCoresAreNamed() {
    func bound(_ r: Int, _ cpus: [Int]) -> DoctorReport.RankInfo {
      var info = rank(r, cpus: 4)
      info.topology = CPUTopology(
        online: [0, 1, 2, 3], allowed: cpus, cores: cpus.map { [$0] }, numaDomains: [cpus], quotaCPUs: nil)
      return info
    }
    func warnings(_ ranks: [DoctorReport.RankInfo]) -> [String] {
      DoctorReport.assess(
        version: "t", backend: "mpi", mpiLibrary: nil, sgemmShape: "", ranks: ranks, allreduce: []
      ).warnings
    }
    let shared = warnings([bound(0, [0, 1]), bound(1, [1, 2])])
    #expect(
      shared.contains { $0.contains("ranks 0 and 1 on node1 are bound to the same CPU(s) 1") }, "\(shared)")
    #expect(warnings([bound(0, [0, 1]), bound(1, [2, 3])]).isEmpty)
    #expect(warnings([bound(0, [0, 1, 2, 3]), bound(1, [0, 1, 2, 3])]).isEmpty)
    // More BLAS threads than the CPUs the ranks may use between them, named with both numbers.
    var crowded = bound(0, [0])
    crowded.blasThreads = 2
    #expect(warnings([crowded]).contains { $0.contains("2 BLAS threads in all on 1 allowed CPUs") })
    #expect(
      DoctorReport.assess(
        version: "t", backend: "mpi", mpiLibrary: nil, sgemmShape: "", ranks: [bound(0, [0, 1])],
        allreduce: []
      ).text.contains(
        "rank 0: 2 of 4 online CPUs allowed: 2 core(s) × 1 thread(s), 1 NUMA domain(s), no CPU quota"))
  }

  @Test func unreadableModelIsAProblemNamingRankAndPath() {
    var broken = rank(1)
    broken.model = ModelAccess.check("/shared/missing.gguf")
    let report = DoctorReport.assess(
      version: "t", backend: "mpi", mpiLibrary: nil, sgemmShape: "", ranks: [rank(0), broken], allreduce: [])
    #expect(!report.ready)
    #expect(report.problems == ["rank 1 on node1: model path /shared/missing.gguf does not exist"])
    #expect(report.verdict.hasPrefix("NOT READY: rank 1 on node1: model path /shared/missing.gguf"))
  }

  @Test func failedCollectiveAndWrongKernelAreProblems() {
    var bad = rank(1)
    bad.checks = [CollectiveCheckResult(name: "barrier", passed: false, detail: "timeout")]
    bad.sgemmError = 0.3
    let report = DoctorReport.assess(
      version: "t", backend: "mpi", mpiLibrary: nil, sgemmShape: "", ranks: [rank(0), bad], allreduce: [])
    #expect(report.problems.contains("collective check 'barrier' failed (rank 1: timeout)"))
    #expect(report.problems.contains { $0.contains("sgemm with the 'Haswell' kernel is wrong") })
  }

  @Test func oversubscriptionAndFallbackKernelAreWarnings() {
    let report = DoctorReport.assess(
      version: "t", backend: "mpi", mpiLibrary: nil, sgemmShape: "",
      ranks: [rank(0, threads: 2, core: "Prescott"), rank(1, threads: 2, core: "Prescott")], allreduce: [])
    #expect(report.ready)
    #expect(
      report.warnings.contains { $0.contains("4 BLAS threads in all on 2 CPUs; set OPENBLAS_NUM_THREADS=1") })
    #expect(report.warnings.contains { $0.contains("try OPENBLAS_CORETYPE=Haswell") })
    #expect(report.verdict.hasPrefix("READY, with 2 warning(s)"))
  }

  @Test func formatsSizesAndDurations() {
    #expect(formatBytes(4) == "4 B" && formatBytes(64 << 20) == "64 MiB" && formatBytes(1536) == "1.5 KiB")
    #expect(formatDuration(1.234) == "1.23 µs" && formatDuration(2500) == "2.50 ms")
    #expect(format(3.14159, 2) == "3.14" && format(2, 1) == "2.0")
  }
}

@Suite struct DoctorProbeTests {
  @Test func twoThreadRanksGatherOneReport() throws {
    let probe = DoctorProbe(
      model: "/nonexistent/base.gguf", threads: 1, maxBytes: 4096, sgemmSeconds: 0.01, allreduceSeconds: 0.002
    )
    let reports = try LocalCommunicator.run(ranks: 2) { comm in try probe.collect(on: comm) }
    #expect(reports[0] == reports[1])
    let report = reports[0]
    #expect(report.worldSize == 2 && report.ranks.map(\.rank) == [0, 1])
    #expect(report.allreduce.map(\.bytes) == [4, 16, 64, 256, 1024, 4096])
    #expect(report.ranks.allSatisfy { $0.checks.allSatisfy(\.passed) && $0.blasThreads == 1 })
    #expect(!report.ready)
    #expect(report.problems.count == 2)
    #expect(report.problems[1].hasPrefix("rank 1 on "))
    #expect(report.problems[1].hasSuffix("model path /nonexistent/base.gguf does not exist"))
  }
}
