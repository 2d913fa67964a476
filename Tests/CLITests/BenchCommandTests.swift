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
    let basePrecision: String
    let bf16Route: String?
    let baseMB: Double
    let phases: [[String: Double]]
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
    // Each rank's time per phase: its products and element-wise work, and (ranks) the all-reduce.
    #expect(result.phases.count == result.ranks)
    for phases in result.phases {
      #expect(
        ["frozen", "head", "attention", "elementwise", "optimizer"].allSatisfy { phases[$0, default: 0] > 0 })
      #expect((phases["allreduce"] ?? 0) > 0 || result.ranks == 1, "\(phases)")
    }
  }

  /// `SWIFT_LORA_DIST_HEAD_CHUNK` sets the output head's chunk (its logits buffer shrinks by
  /// 192 rows × the vocabulary at 64); a value out of range keeps 256.
  @Test func theHeadChunkKnob() throws {
    struct Buffers: Decodable { let bufferMB: Double }
    func buffers(_ chunk: String) throws -> Double {
      let outcome = try CommandRunner.run(
        [
          "bench", "--model", Self.model, "--batch", "1", "--seq", "8", "--steps", "1", "--warmup", "0",
          "--threads", "1", "--json",
        ], environment: ["SWIFT_LORA_DIST_HEAD_CHUNK": chunk])
      #expect(outcome.status == 0, "\(outcome.errors)")
      let result = try JSONDecoder().decode(Buffers.self, from: Data(outcome.output.utf8))
      return result.bufferMB
    }
    let (standard, small, refused) = (try buffers("256"), try buffers("64"), try buffers("0"))
    // SmolLM2's vocabulary: 49152 floats a row.
    #expect(abs((standard - small) - 192 * 49152 * 4 / 1_048_576) < 1, "\(standard) vs \(small)")
    #expect(refused == standard)
  }

  /// Variable lengths (`--min-seq`) over two thread-ranks, balanced by tokens or by count; a
  /// length range or balance that makes no sense is refused by name.
  @Test func variableLengthsAndTheirBalance() throws {
    struct Lengths: Decodable {
      let minSeq: Int?
      let balance: String
      let paddingFree: Bool
      let ranks: Int
      let tokensPerSecond: Double
    }
    for (balance, padding) in [
      ("tokens", []), ("sequences", []), ("tokens", ["--no-padding-free"]),
      ("tokens", ["--objective", "dpo"]),
    ] {
      let outcome = try CommandRunner.run(
        [
          "bench", "--model", Self.model, "--batch", "4", "--min-seq", "4", "--seq", "24", "--steps", "2",
          "--warmup", "0", "--local-ranks", "2", "--threads", "1", "--balance", balance, "--json",
        ] + padding)
      #expect(outcome.status == 0, "\(outcome.errors)")
      let result = try JSONDecoder().decode(Lengths.self, from: Data(outcome.output.utf8))
      #expect(
        result.minSeq == 4 && result.balance == balance && result.ranks == 2 && result.tokensPerSecond > 0)
      #expect(result.paddingFree == !padding.contains("--no-padding-free"))
    }
    for (flags, message) in [
      (["--min-seq", "30"], "--min-seq 30 must be from 2 to --seq (24)"),
      (["--balance", "even"], "--balance is tokens or sequences, got 'even'"),
    ] {
      let outcome = try CommandRunner.run(["bench", "--model", Self.model, "--seq", "24"] + flags)
      #expect(outcome.status != 0)
      #expect(outcome.errors.contains(message), "\(outcome.errors)")
    }
  }

  /// More thread-ranks than CPUs: a warning that names both numbers, and the run goes on.
  @Test func moreThreadsThanCPUsIsAWarning() throws {
    let cpus = ProcessInfo.processInfo.activeProcessorCount
    let outcome = try CommandRunner.run([
      "bench", "--model", Self.model, "--batch", String(cpus + 1), "--seq", "8", "--steps", "1", "--warmup",
      "0",
      "--local-ranks", String(cpus + 1), "--threads", "1", "--numa-copies", "--json",
    ])
    #expect(outcome.status == 0, "\(outcome.errors)")
    #expect(
      outcome.errors.contains("warning: \(cpus + 1) rank(s) × 1 thread(s) = \(cpus + 1) threads on "),
      "\(outcome.errors)")
    // On a machine of one NUMA domain the option is accepted and noted.
    let domains =
      (try? FileManager.default.contentsOfDirectory(atPath: "/sys/devices/system/node"))?
      .filter { $0.hasPrefix("node") && Int($0.dropFirst(4)) != nil }.count ?? 1
    if domains <= 1 {
      #expect(
        outcome.errors.contains("note: --numa-copies: this machine has 1 NUMA domain"), "\(outcome.errors)")
    }
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

  func bench(_ precision: String, environment: [String: String] = [:]) throws -> CommandRunner.Outcome {
    try CommandRunner.run(
      [
        "bench", "--model", ModelCommandTests.fixtures + "/tiny-tied/model.gguf", "--batch", "2", "--seq",
        "8",
        "--steps", "1", "--warmup", "0", "--threads", "1", "--json", "--base-precision", precision,
      ], environment: environment)
  }

  /// bf16 holds the matrices in half the bytes; f32 is the fp32 path.
  @Test func basePrecisionIsReported() throws {
    let f32 = try JSONDecoder().decode(
      BenchCommandTests.Result.self, from: Data(try bench("f32").output.utf8))
    #expect(f32.basePrecision == "f32" && f32.bf16Route == nil)
    let outcome = try bench("bf16")
    guard outcome.status == 0 else {
      // Only a CPU where oneDNN has no bf16 products refuses, in one sentence.
      #expect(outcome.errors.contains("bf16 needs AVX-512"), "\(outcome.errors)")
      return
    }
    let bf16 = try JSONDecoder().decode(BenchCommandTests.Result.self, from: Data(outcome.output.utf8))
    #expect(bf16.basePrecision == "bf16" && bf16.bf16Route != nil && bf16.tokensPerSecond > 0)
    #expect(bf16.baseMB < 0.6 * f32.baseMB, "\(bf16.baseMB) MB vs \(f32.baseMB) MB")
  }

  /// Where oneDNN offers no bf16 (here forced down to AVX2 as on older CPUs): an explicit
  /// bf16 is one sentence and exit 1, auto falls back to f32.
  @Test func bf16WithoutOneDNNSupportIsOneSentence() throws {
    let avx2 = ["DNNL_MAX_CPU_ISA": "AVX2"]
    let refused = try bench("bf16", environment: avx2)
    #expect(refused.status != 0)
    let message = refused.errors.trimmingCharacters(in: .whitespacesAndNewlines)
    #expect(
      message.contains("--base-precision bf16 cannot be used here") && message.contains("avx2"), "\(message)")
    #expect(!message.contains("\n"), "\(message)")
    let auto = try bench("auto", environment: avx2)
    #expect(auto.status == 0, "\(auto.errors)")
    #expect(
      try JSONDecoder().decode(BenchCommandTests.Result.self, from: Data(auto.output.utf8)).basePrecision
        == "f32")
  }
}
