import Foundation
import LoRACheckpoint
import LoRAFormats
import Testing

@testable import swift_lora_dist

/// `train` on several ranks through the binary and a real `mpirun`: the same adapter as one
/// rank with the whole batch, over shared memory and TCP and as thread-ranks, by either
/// balance, padding-free (the default) or padded; ranks that
/// disagree or fail stop the job; a killed or terminated job resumes from its checkpoint.
@Suite(.serialized, .enabled(if: TrainCommandTests.modelAvailable, "the default model is not in the cache"))
struct DistributedTrainTests {
  static let model = TrainCommandTests.model

  func arguments(_ output: String, data: String, steps: Int = 3, _ extra: [String] = []) -> [String] {
    [
      "train", "--model", Self.model, "--data", data, "--output", output, "--steps", String(steps),
      "--batch-size", "4", "--micro-batch", "1", "--max-seq-len", "32", "--lr", "1e-3", "--seed", "5",
      "--threads", "1", "--json",
    ] + extra
  }

  static func losses(_ output: String) -> [Double] {
    output.split(separator: "\n").compactMap { line -> Double? in
      guard line.contains("\"event\":\"step\""),
        let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
      else { return nil }
      return object["loss"] as? Double
    }
  }

  /// All A and B values of a PEFT folder, in key order.
  static func adapter(_ folder: String) throws -> [Float] {
    let file = try SafetensorsFile(path: folder + "/adapter_model.safetensors")
    return try file.tensors.keys.sorted().flatMap { try file.tensor($0).values }
  }

  static func relativeDifference(_ a: [Float], _ b: [Float]) -> Double {
    let difference = zip(a, b).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) }
    let norm = b.reduce(0.0) { $0 + Double($1) * Double($1) }
    return (difference / norm).squareRoot()
  }

  /// The fp32 base: equal to 1e-5. (A bf16 base rounds activations to bf16, so a last-bit
  /// difference of the all-reduced gradients can move a value across a rounding boundary:
  /// `bf16RanksAgreeWithinItsRounding`.)
  @Test func nRanksEqualOneRankOverSharedMemoryTCPAndThreads() throws {
    let folder = try TrainCommandTests.Folder()
    let data = try folder.write("train.jsonl", TrainCommandTests.arithmetic)
    let f32 = ["--base-precision", "f32"]
    let arguments = { (output: String, data: String, extra: [String]) in
      self.arguments(output, data: data, f32 + extra)
    }
    let one = try CommandRunner.run(arguments(folder.path + "/one", data, []))
    #expect(one.status == 0, "\(one.errors)")
    let reference = try Self.adapter(folder.path + "/one")
    let runs: [(String, CommandRunner.Outcome)] = [
      ("mpi", try CommandRunner.run(arguments(folder.path + "/mpi", data, []), mpiRanks: 2)),
      (
        "tcp",
        try CommandRunner.run(
          arguments(folder.path + "/tcp", data, []), mpiRanks: 2, mpiOptions: ["--mca", "btl", "tcp,self"])
      ),
      (
        "threads",
        try CommandRunner.run(arguments(folder.path + "/threads", data, ["--local-ranks", "2"]))
      ),
      ("mpi4", try CommandRunner.run(arguments(folder.path + "/mpi4", data, []), mpiRanks: 4)),
      (
        "sequences",
        try CommandRunner.run(
          arguments(folder.path + "/sequences", data, ["--balance", "sequences"]), mpiRanks: 2)
      ),
      // Padding-free passes are the default: one sequence a row trains the same.
      (
        "padded",
        try CommandRunner.run(arguments(folder.path + "/padded", data, ["--no-padding-free"]), mpiRanks: 2)
      ),
    ]
    for (name, outcome) in runs {
      #expect(outcome.status == 0, "\(name): \(outcome.errors)")
      #expect(outcome.output.contains(name == "mpi4" ? "4 ranks" : "2 ranks"), "\(name)")
      let losses = Self.losses(outcome.output)
      #expect(losses.count == 3)
      for (a, b) in zip(losses, Self.losses(one.output)) { #expect(abs(a - b) <= 1e-5 * abs(b), "\(name)") }
      let difference = Self.relativeDifference(try Self.adapter(folder.path + "/" + name), reference)
      #expect(difference <= 1e-5, "\(name): relative difference \(difference)")
      // Every rank's time per phase: in the JSON output and in metrics.jsonl.
      let phases = try Self.phases(outcome.output)
      #expect(phases.count == (name == "mpi4" ? 4 : 2), "\(name)")
      #expect(
        phases.allSatisfy { ($0["frozen"] ?? 0) > 0 && ($0["allreduce"] ?? 0) > 0 && $0["waiting"] != nil })
      let metrics = try String(contentsOfFile: folder.path + "/" + name + "/metrics.jsonl", encoding: .utf8)
      #expect(try Self.phases(metrics).count == phases.count, "\(name)")
    }
  }

  /// The `phases` line's ranks, each its phases' seconds per update.
  static func phases(_ output: String) throws -> [[String: Double]] {
    let line = try #require(output.split(separator: "\n").first { $0.contains("\"event\":\"phases\"") })
    let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    return try #require(object["ranks"] as? [[String: Double]])
  }

  /// The default precision (bf16 where the CPU has it): 2 thread-ranks against one rank, the
  /// same first update, then agreement within bf16's rounding (measured: 6e-4 relative in
  /// the third loss, 1.6e-4 in the adapter).
  @Test func bf16RanksAgreeWithinItsRounding() throws {
    let folder = try TrainCommandTests.Folder()
    let data = try folder.write("train.jsonl", TrainCommandTests.arithmetic)
    let one = try CommandRunner.run(arguments(folder.path + "/one", data: data))
    let two = try CommandRunner.run(arguments(folder.path + "/two", data: data, ["--local-ranks", "2"]))
    #expect(one.status == 0 && two.status == 0, "\(one.errors) \(two.errors)")
    let (a, b) = (Self.losses(two.output), Self.losses(one.output))
    #expect(a.count == 3 && b.count == 3)
    #expect(abs(a[0] - b[0]) <= 1e-5 * abs(b[0]))
    for (x, y) in zip(a, b) { #expect(abs(x - y) <= 1e-2 * abs(y)) }
    let difference = Self.relativeDifference(
      try Self.adapter(folder.path + "/two"), try Self.adapter(folder.path + "/one"))
    #expect(difference <= 1e-2, "relative difference \(difference)")
  }

  @Test func ranksWithOtherDataOrNoModelStopTheJob() throws {
    let folder = try TrainCommandTests.Folder()
    let data = try folder.write("train.jsonl", TrainCommandTests.arithmetic)
    let other = try folder.write(
      "other.jsonl", TrainCommandTests.arithmetic.replacingOccurrences(of: "plus", with: "and"))
    let differing = try CommandRunner.runMPMD([
      arguments(folder.path + "/a", data: data), arguments(folder.path + "/a", data: other),
    ])
    #expect(differing.status != 0)
    #expect(differing.errors.contains("rank 1: training data"), "\(differing.errors)")
    #expect(!folder.exists("a/adapter_model.safetensors"))

    let otherRate = try CommandRunner.runMPMD([
      arguments(folder.path + "/c", data: data), arguments(folder.path + "/c", data: data, ["--lr", "2e-3"]),
    ])
    #expect(otherRate.status != 0 && otherRate.errors.contains("rank 1: settings"), "\(otherRate.errors)")

    var noModel = arguments(folder.path + "/b", data: data)
    noModel[2] = folder.path + "/missing.gguf"
    let failing = try CommandRunner.runMPMD([arguments(folder.path + "/b", data: data), noModel])
    #expect(failing.status != 0)
    #expect(
      failing.errors.contains("error on rank 1") && failing.errors.contains("missing.gguf"),
      "\(failing.errors)")
    #expect(!folder.exists("b/adapter_model.safetensors"))
  }

  /// Waits until `path` holds a checkpoint, or fails after `seconds`.
  func waitForCheckpoint(_ folder: String, seconds: Double = 240) throws -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
      if !CheckpointStore.list(URL(fileURLWithPath: folder)).isEmpty { return true }
      Thread.sleep(forTimeInterval: 0.5)
    }
    return false
  }

  /// PIDs of this job's rank processes (children of mpirun that run `train … --output output`).
  func rankPIDs(_ output: String) -> [Int32] {
    let pipe = Pipe()
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/pgrep")
    process.arguments = ["-f", "^\(CommandRunner.executable) train .*--output \(output) "]
    process.standardOutput = pipe
    try? process.run()
    process.waitUntilExit()
    let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    return text.split(separator: "\n").compactMap { Int32($0) }
  }

  @Test func aKilledRankStopsTheJobAndTheRunResumesOnAnotherRankCount() throws {
    let folder = try TrainCommandTests.Folder()
    let data = try folder.write("train.jsonl", TrainCommandTests.arithmetic)
    let output = folder.path + "/k"
    let job = try CommandRunner.start(
      arguments(output, data: data, steps: 400, ["--checkpoint-every", "1", "--keep", "2"]), mpiRanks: 2,
      log: folder.path + "/k.log")
    #expect(try waitForCheckpoint(output + "/checkpoints"))
    let pids = rankPIDs(output)
    #expect(pids.count == 2, "rank processes: \(pids)")
    kill(pids.last!, SIGKILL)
    job.waitUntilExit()
    #expect(job.terminationStatus != 0)
    // The newest checkpoint is whole; one rank continues from it.
    let (reader, _) = try CheckpointStore.newestValid(output)
    let step = reader.header.training!.step
    let resumed = try CommandRunner.run(arguments(output, data: data, steps: step + 2, ["--resume", output]))
    #expect(resumed.status == 0, "\(resumed.errors)")
    #expect(Self.losses(resumed.output).count == 2)
  }

  @Test func sigtermFinishesTheUpdateWritesACheckpointAndExits143() throws {
    let folder = try TrainCommandTests.Folder()
    let data = try folder.write("train.jsonl", TrainCommandTests.arithmetic)
    let output = folder.path + "/t"
    let job = try CommandRunner.start(
      arguments(output, data: data, steps: 400, ["--checkpoint-every", "100"]), mpiRanks: 2,
      log: folder.path + "/t.log")
    // Wait for training to run (the first update's line in the metrics file), then TERM every rank.
    let deadline = Date().addingTimeInterval(240)
    while Date() < deadline
      && !((try? String(contentsOfFile: output + "/metrics.jsonl", encoding: .utf8))?.contains("\"step\"")
        ?? false)
    {
      Thread.sleep(forTimeInterval: 0.5)
    }
    for pid in rankPIDs(output) { kill(pid, SIGTERM) }
    job.waitUntilExit()
    let log = (try? String(contentsOfFile: folder.path + "/t.log", encoding: .utf8)) ?? ""
    #expect(job.terminationStatus == 143, "mpirun exited \(job.terminationStatus): \(log.suffix(600))")
    #expect(log.contains("\"event\":\"stopped\""), "\(log.suffix(600))")
    let (reader, _) = try CheckpointStore.newestValid(output)
    let step = reader.header.training!.step
    #expect(step >= 1 && step < 100)
    let resumed = try CommandRunner.run(
      arguments(
        output, data: data, steps: 400,
        ["--checkpoint-every", "100", "--resume", "auto", "--steps", String(step + 1)]))
    #expect(resumed.status == 0, "\(resumed.errors)")
  }
}
