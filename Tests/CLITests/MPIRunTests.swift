import Foundation
import Testing

@testable import swift_lora_dist

/// Runs the built `swift-lora-dist` under a real `mpirun -np 2`: the MPI backend's
/// collective checks, the all-reduce table and the error path, across two processes.
@Suite(.serialized) struct MPIRunTests {
  static func mpirun(_ arguments: [String]) throws -> CommandRunner.Outcome {
    try CommandRunner.run(arguments, mpiRanks: 2)
  }

  @Test func collectiveChecksPassOnTwoMPIRanks() throws {
    #expect(
      FileManager.default.isExecutableFile(atPath: CommandRunner.executable),
      "\(CommandRunner.executable) is not built")
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

  /// A job whose rank groups fail apart: the group with bad data stops the whole job with
  /// its error, rather than the other rank waiting for it forever (releasing the shared base
  /// is collective).
  @Test(.enabled(if: TrainCommandTests.modelAvailable, "the default model is not in the cache"))
  func aRankGroupThatFailsAloneStopsTheJobWithItsError() throws {
    let folder = try TrainCommandTests.Folder()
    _ = try folder.write("sums.jsonl", TrainCommandTests.arithmetic)
    _ = try folder.write("text.jsonl", #"{"text": "not a prompt and a completion"}"# + "\n")
    let job = try folder.write(
      "jobs.yaml",
      """
      model: \(TrainCommandTests.model)
      output: out
      defaults: { steps: 1, batch_size: 1, micro_batch: 1, max_seq_len: 32, checkpoint_every: 0, format: prompt_completion }
      adapters:
        - { name: good, data: sums.jsonl, placement: separate }
        - { name: wrong, data: text.jsonl, placement: separate }
      """)
    let outcome = try Self.mpirun(["train", "--jobs", job, "--threads", "1"])
    #expect(outcome.status != 0)
    #expect(
      outcome.errors.contains("error on rank 1")
        && outcome.errors.contains("text.jsonl:1: unknown key \"text\""),
      "\(outcome.errors)")
    #expect(!folder.exists("out/wrong/adapter_model.safetensors"))
  }
}
