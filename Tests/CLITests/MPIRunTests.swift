import Foundation
import Testing

@testable import swift_lora_dist

/// Runs the built `swift-lora-dist` under a real `mpirun -np 2`: the MPI backend's
/// collective checks, the all-reduce table and the error path, across two processes.
@Suite(.serialized) struct MPIRunTests {
  struct Outcome {
    var status: Int32
    var output: String
    var errors: String
  }

  /// The `swift-lora-dist` executable built beside this test bundle.
  static var executable: String {
    if let path = ProcessInfo.processInfo.environment["SWIFT_LORA_DIST_BIN"] { return path }
    let bundle = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
    return bundle.appendingPathComponent("swift-lora-dist").path
  }

  static func mpirun(_ arguments: [String], ranks: Int = 2) throws -> Outcome {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["mpirun", "-np", String(ranks), "--oversubscribe", executable] + arguments
    // Drop what an MPI singleton in this test process (LoRACommTests) put in the environment:
    // a child mpirun that sees it believes it runs inside an MPI job.
    var environment = ProcessInfo.processInfo.environment.filter { key, _ in
      !["OMPI_", "PMIX_", "PMI_", "OPAL_", "ORTE_"].contains { key.hasPrefix($0) }
    }
    environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
    environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    environment["OPENBLAS_NUM_THREADS"] = "1"
    process.environment = environment
    let output = Pipe()
    let errors = Pipe()
    process.standardOutput = output
    process.standardError = errors
    try process.run()
    let outData = output.fileHandleForReading.readDataToEndOfFile()
    let errData = errors.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return Outcome(
      status: process.terminationStatus, output: String(decoding: outData, as: UTF8.self),
      errors: String(decoding: errData, as: UTF8.self))
  }

  @Test func collectiveChecksPassOnTwoMPIRanks() throws {
    #expect(FileManager.default.isExecutableFile(atPath: Self.executable), "\(Self.executable) is not built")
    let outcome = try Self.mpirun(["doctor", "--quick", "--json", "--max-size", "1"])
    #expect(outcome.status == 0, "doctor failed: \(outcome.errors)")
    let report = try JSONDecoder().decode(DoctorReport.self, from: Data(outcome.output.utf8))
    #expect(report.backend == "mpi" && report.worldSize == 2)
    #expect(report.mpiLibrary?.contains("MPI") == true)
    #expect(report.ranks.map(\.rank) == [0, 1])
    #expect(Set(report.ranks.map(\.processID)).count == 2, "the ranks must be two processes")
    for info in report.ranks {
      #expect(info.checks.count >= 12)
      for check in info.checks {
        #expect(check.passed, "MPI rank \(info.rank): \(check.name): \(check.detail)")
      }
      #expect(info.blasThreads == 1)
      #expect(info.sgemmAloneGFLOPs > 0 && info.sgemmError < 1e-5)
    }
    #expect(report.allreduce.map(\.bytes) == Array(sequence(first: 4) { $0 * 4 }.prefix { $0 <= 1 << 20 }))
    #expect(report.allreduce.allSatisfy { $0.microseconds > 0 && $0.iterations >= 3 })
  }

  @Test func unreadableModelFailsTheJobNamingRankAndPath() throws {
    let outcome = try Self.mpirun(["doctor", "--quick", "--max-size", "1", "--model", "/nonexistent/m.gguf"])
    #expect(outcome.status != 0)
    #expect(outcome.output.contains("verdict"), "no report; mpirun said: \(outcome.errors)")
    #expect(outcome.output.contains("rank 0 on "))
    #expect(outcome.output.contains("rank 1 on "))
    #expect(outcome.output.contains("model path /nonexistent/m.gguf does not exist"))
    #expect(outcome.output.contains("verdict: NOT READY"))
  }
}
