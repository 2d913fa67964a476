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

  /// Runs `swift-lora-dist arguments…`, under `mpirun -np ranks` when `ranks` is given
  /// (with `mpiOptions` such as `--mca btl tcp,self`).
  static func run(_ arguments: [String], mpiRanks ranks: Int? = nil, mpiOptions: [String] = []) throws
    -> Outcome
  {
    let mpi = ranks.map { ["mpirun", "-np", String($0), "--oversubscribe"] + mpiOptions } ?? []
    return try launch(mpi + [executable] + arguments)
  }

  /// Runs `swift-lora-dist arguments…` with `variables` added to its environment.
  static func run(_ arguments: [String], environment variables: [String: String]) throws -> Outcome {
    try launch(
      variables.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" } + [executable] + arguments)
  }

  /// Runs one MPI job whose ranks get different arguments (mpirun's `A : B` form), one rank each.
  static func runMPMD(_ perRank: [[String]]) throws -> Outcome {
    var command = ["mpirun", "--oversubscribe"]
    for (i, arguments) in perRank.enumerated() {
      if i > 0 { command.append(":") }
      command += ["-np", "1", executable] + arguments
    }
    return try launch(command)
  }

  /// Starts a command in the background (for fault tests); its output goes to `log`.
  static func start(_ arguments: [String], mpiRanks ranks: Int, log: String) throws -> Process {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["mpirun", "-np", String(ranks), "--oversubscribe", executable] + arguments
    process.environment = environment
    FileManager.default.createFile(atPath: log, contents: nil)
    let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
    process.standardOutput = handle
    process.standardError = handle
    try process.run()
    return process
  }

  /// The environment commands run with: no inherited MPI state, root allowed, one BLAS thread.
  static var environment: [String: String] {
    var environment = ProcessInfo.processInfo.environment.filter { key, _ in
      !["OMPI_", "PMIX_", "PMI_", "OPAL_", "ORTE_"].contains { key.hasPrefix($0) }
    }
    environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
    environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    environment["OPENBLAS_NUM_THREADS"] = "1"
    return environment
  }

  private static func launch(_ command: [String]) throws -> Outcome {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = command
    // Drop what an MPI singleton in this test process (LoRACommTests) put in the environment:
    // a child mpirun that sees it believes it runs inside an MPI job.
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
