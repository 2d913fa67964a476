import Foundation
import Testing

/// `bench` through the binary on the default model (tiny batches): one rank, and thread-ranks.
@Suite(.enabled(if: TrainCommandTests.modelAvailable, "the default model is not in the cache"))
struct BenchCommandTests {
  static let model = TrainCommandTests.model

  struct Result: Decodable {
    let ranks: Int
    let threadRanks: Bool
    let tokensPerSecond: Double
    let sgemmPeakGFLOPs: Double
    let rankProportionalMB: [Double]
  }

  @Test(arguments: [nil, 2] as [Int?])
  func benchReportsItsRanks(localRanks: Int?) throws {
    var arguments = [
      "bench", "--model", Self.model, "--batch", "2", "--seq", "8", "--steps", "1", "--warmup", "0",
      "--threads",
      "1", "--json",
    ]
    if let localRanks { arguments += ["--local-ranks", String(localRanks)] }
    let outcome = try CommandRunner.run(arguments)
    #expect(outcome.status == 0, "\(outcome.errors)")
    let result = try JSONDecoder().decode(Result.self, from: Data(outcome.output.utf8))
    #expect(result.ranks == (localRanks ?? 1))
    #expect(result.threadRanks == (localRanks != nil))
    #expect(result.tokensPerSecond > 0 && result.sgemmPeakGFLOPs > 0)
    // Thread-ranks are one process: its memory once.
    #expect(result.rankProportionalMB.count == 1)
  }

  @Test func theRanksMustDivideTheBatch() throws {
    let outcome = try CommandRunner.run([
      "bench", "--model", Self.model, "--batch", "3", "--seq", "8", "--steps", "1", "--local-ranks", "2",
    ])
    #expect(outcome.status != 0)
    #expect(outcome.errors.contains("--batch 3 must be divisible by the 2 ranks"), "\(outcome.errors)")
  }

  struct FusedResult: Decodable {
    let adapters: Int
    let ranks: Int
    let threads: Int
    let sequentialRanks: Int
    let sequentialThreads: Int
    let fusedOverSequential: Double
  }

  /// Two single-sequence adapters on two thread-ranks: fused, each trains whole on a rank of
  /// its own; alone, a batch of one does not split, so each gets rank 0 with both threads.
  @Test func fusedAdaptersSpreadOverThreadRanks() throws {
    let outcome = try CommandRunner.run([
      "bench", "--model", Self.model, "--adapters", "2", "--batch", "1", "--seq", "8", "--steps", "1",
      "--warmup", "0", "--local-ranks", "2", "--threads", "1", "--json",
    ])
    #expect(outcome.status == 0, "\(outcome.errors)")
    let result = try JSONDecoder().decode(FusedResult.self, from: Data(outcome.output.utf8))
    #expect(result.adapters == 2 && result.ranks == 2 && result.threads == 1)
    #expect(result.sequentialRanks == 1 && result.sequentialThreads == 2)
    #expect(result.fusedOverSequential > 0)
  }

  /// Thread-ranks are refused under an MPI launcher (where ranks are processes), by every
  /// command that has them, before any model is loaded.
  @Test func localRanksAreRefusedUnderMPI() throws {
    let folder = try TrainCommandTests.Folder()
    let data = try folder.write("sums.jsonl", TrainCommandTests.arithmetic)
    let job = try folder.write(
      "jobs.yaml",
      "model: /nonexistent/model.gguf\noutput: out\nadapters:\n  - { name: sums, data: sums.jsonl }\n")
    for arguments in [
      ["bench", "--model", "/nonexistent/model.gguf", "--local-ranks", "2"],
      [
        "train", "--model", "/nonexistent/model.gguf", "--data", data, "--output", folder.path + "/out",
        "--local-ranks", "2",
      ],
      ["train", "--jobs", job, "--local-ranks", "2"],
    ] {
      let outcome = try CommandRunner.run(arguments, mpiRanks: 1)
      #expect(outcome.status != 0, "\(arguments)")
      #expect(outcome.errors.contains("do not combine it with mpirun"), "\(arguments): \(outcome.errors)")
    }
  }
}

/// `bench` trains on random token ids, so it needs weights but no tokenizer.
struct BenchTinyModelTests {
  @Test func benchRunsOnWeightsWithoutATokenizer() throws {
    let outcome = try CommandRunner.run([
      "bench", "--model", ModelCommandTests.fixtures + "/tiny-tied/model.gguf", "--batch", "2", "--seq", "8",
      "--steps", "1", "--warmup", "0", "--threads", "1", "--json",
    ])
    #expect(outcome.status == 0, "\(outcome.errors)")
    let result = try JSONDecoder().decode(BenchCommandTests.Result.self, from: Data(outcome.output.utf8))
    #expect(result.ranks == 1 && result.tokensPerSecond > 0)
  }
}
