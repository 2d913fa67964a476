import Foundation

/// Runs the built `swift-lora-dist`, directly or under a real `mpirun`, and collects its output.
enum CommandRunner {
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

  /// Runs `swift-lora-dist arguments…`, under `mpirun -np ranks` when `ranks` is given.
  static func run(_ arguments: [String], mpiRanks ranks: Int? = nil) throws -> Outcome {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    let mpi = ranks.map { ["mpirun", "-np", String($0), "--oversubscribe"] } ?? []
    process.arguments = mpi + [executable] + arguments
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
}
