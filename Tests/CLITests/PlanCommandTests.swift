import Foundation
import LoRAKernels
import Testing

/// `plan` through the built binary, on the tiny fixture model and temporary data.
@Suite struct PlanCommandTests {
  static let model = ModelCommandTests.fixtures + "/tiny-tied/model.gguf"

  final class Folder {
    let path: String
    init() throws {
      path = NSTemporaryDirectory() + "plan-cli-" + UUID().uuidString
      try FileManager.default.createDirectory(atPath: path + "/data", withIntermediateDirectories: true)
      let lines = (1...20).map { #"{"prompt": "What is \#($0) plus \#($0)?", "completion": " \#(2 * $0)"}"# }
      for name in ["a", "b", "c"] {
        try (lines.joined(separator: "\n") + "\n").write(
          toFile: path + "/data/\(name).jsonl", atomically: true, encoding: .utf8)
      }
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
    func jobs(_ text: String) throws -> String {
      try text.write(toFile: path + "/jobs.yaml", atomically: true, encoding: .utf8)
      return path + "/jobs.yaml"
    }
  }

  var job: String {
    """
    model: \(Self.model)
    output: out
    defaults: { steps: 10, batch_size: 4, micro_batch: 2, max_seq_len: 32 }
    adapters:
      - { name: one, data: data/a.jsonl, placement: separate }
      - { name: two, data: data/b.jsonl, group: g }
      - name: sw
        data: data/c.jsonl
        validation_fraction: 0.2
        sweep: { rank: [2, 4], lr: [1.0e-4, 3.0e-4] }
        successive_halving: { rungs: [5] }

    """
  }

  @Test func printsATableAndJSON() throws {
    let folder = try Folder()
    let jobs = try folder.jobs(job)
    let outcome = try CommandRunner.run(["plan", "--jobs", jobs, "-np", "4"])
    #expect(outcome.status == 0, "\(outcome.errors)")
    for text in [
      "6 adapter(s) on 4 rank(s) in 3 rank group(s)", "group  ranks  adapter", "fused (g)", "sw-r2-lr0.0001",
      "sw-r4-lr0.0003", "separate", "5 of 10", "estimated total time:", "idle ranks: 3",
    ] {
      #expect(outcome.output.contains(text), "'\(text)' not in:\n\(outcome.output)")
    }
    let json = try CommandRunner.run(["plan", "--jobs", jobs, "--ranks", "3", "--gflops", "10", "--json"])
    #expect(json.status == 0, "\(json.errors)")
    let document = try #require(
      try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any])
    let plan = try #require(document["plan"] as? [String: Any])
    #expect(plan["ranks"] as? Int == 3 && plan["gflopsPerRank"] as? Double == 10)
    let groups = try #require(plan["groups"] as? [[String: Any]])
    #expect(groups.map { $0["firstRank"] as? Int } == [0, 1, 2])
    let adapters = try #require(plan["adapters"] as? [[String: Any]])
    #expect(adapters.count == 6 && (plan["estimatedSeconds"] as? Double ?? 0) > 0)
  }

  @Test func failsBeforeLoadingWithFileLineAndKey() throws {
    let folder = try Folder()
    let jobs = try folder.jobs(job)
    let tooFew = try CommandRunner.run(["plan", "--jobs", jobs, "-np", "2"])
    #expect(tooFew.status != 0)
    #expect(
      tooFew.errors.contains("jobs.yaml:7: adapters[2]: more rank groups than ranks"), "\(tooFew.errors)")

    let typo = try folder.jobs(
      job.replacingOccurrences(of: "group: g }", with: "group: g, lerning_rate: 1 }"))
    let unknown = try CommandRunner.run(["plan", "--jobs", typo, "-np", "4"])
    #expect(unknown.status != 0)
    #expect(
      unknown.errors.contains("jobs.yaml:6: adapters[1].lerning_rate: unknown key; the adapter keys are"))

    let missing = try folder.jobs(job.replacingOccurrences(of: "data/b.jsonl", with: "data/nothing.jsonl"))
    let noData = try CommandRunner.run(["plan", "--jobs", missing, "-np", "4"])
    #expect(
      noData.status != 0 && noData.errors.contains("adapters[1].data: no such file"), "\(noData.errors)")

    let badRanks = try CommandRunner.run(["plan", "--jobs", jobs, "-np", "0"])
    #expect(badRanks.status != 0 && badRanks.errors.contains("-np must be at least 1"))
  }

  /// `plan` names attention's precision as a run would choose it: the flag over the job
  /// file's key over the base's; bf16 where this machine has no kernel for it is refused as a
  /// run refuses it.
  @Test func showsAttentionsPrecisionAsTheRunWouldChooseIt() throws {
    struct Shown: Decodable { var attentionPrecision: String }
    let folder = try Folder()
    let jobs = { (keys: String) in
      try folder.jobs(
        """
        model: \(Self.model)
        \(keys)
        output: out
        adapters:
          - { name: one, data: data/a.jsonl, batch_size: 2, micro_batch: 2, max_seq_len: 24 }

        """)
    }
    let shown = { (file: String, flags: [String]) throws -> (Int32, String?, String) in
      let run = try CommandRunner.run(["plan", "--jobs", file, "-np", "1", "--json"] + flags)
      let value = try? JSONDecoder().decode(Shown.self, from: Data(run.output.utf8)).attentionPrecision
      return (run.status, value, run.errors)
    }
    let refusedOrShown = { (outcome: (Int32, String?, String)) in
      let (status, value, errors) = outcome
      if Attention.bf16Available {
        #expect(status == 0 && value == "bf16", "\(errors)")
      } else {
        #expect(status != 0 && errors.contains("bf16"), "\(errors)")
      }
    }
    // (jobs(_:) rewrites the one job file: each case writes it, then plans it.)
    let file = try jobs("base_precision: f32")
    #expect(try shown(file, []).1 == "f32")
    let text = try CommandRunner.run(["plan", "--jobs", file, "-np", "1"])
    #expect(text.output.contains("in f32 (attention in f32), once per node"), "\(text.output)")
    // bf16 asked, by the flag over the file or by the file: shown where it runs, refused where not.
    refusedOrShown(try shown(file, ["--attention-precision", "bf16"]))
    _ = try jobs("base_precision: f32\nattention_precision: f32")
    #expect(try shown(file, []).1 == "f32")
    _ = try jobs("attention_precision: bf16")
    refusedOrShown(try shown(file, []))
    #expect(try shown(file, ["--attention-precision", "f32"]).1 == "f32")
  }

  struct Memory: Decodable {
    struct Estimate: Decodable {
      var basePrecision: String
      var baseBytes: Int
      var bufferBytes: Int
    }
    struct FullFineTune: Decodable {
      var modelParameters: Int
      var trainableParameters: Int
      var weightBytes: Int
      var optimizerBytes: Int
      var activationBytes: Int
    }
    var memory: Estimate
    var largestRun: [String]
    var trainableParameters: [String: Int]
    var fullFineTune: FullFineTune
  }

  struct BenchMemory: Decodable {
    var bufferMB: Double
    var baseMB: Double
    var basePrecision: String
  }

  /// The plan's buffer estimate is what `bench` allocates for the same micro-batch and
  /// length, and its base what `bench` holds, in either precision.
  @Test(arguments: ["f32", "auto"])
  func memoryEstimateMatchesWhatBenchAllocates(precision: String) throws {
    let folder = try Folder()
    let jobs = try folder.jobs(
      """
      model: \(Self.model)
      base_precision: \(precision)
      output: out
      adapters:
        - { name: one, data: data/a.jsonl, batch_size: 2, micro_batch: 2, max_seq_len: 24, targets: all-linear, rank: 4 }

      """)
    let plan = try CommandRunner.run(["plan", "--jobs", jobs, "-np", "1", "--json"])
    #expect(plan.status == 0, "\(plan.errors)")
    let estimate = try JSONDecoder().decode(Memory.self, from: Data(plan.output.utf8))
    #expect(estimate.largestRun == ["one"])
    // The parameter story: all-linear r=4 on the tiny model (width 32, kv width 16, MLP 64, 2
    // layers) trains 4·Σ(in + out) = 4·512 per layer; the model has 21,664 parameters; the
    // full fine-tune holds 16 bytes per parameter plus the same activations.
    let full = estimate.fullFineTune
    #expect(estimate.trainableParameters == ["one": 4096] && full.trainableParameters == 4096)
    #expect(full.modelParameters == 21_664 && full.weightBytes == 4 * 21_664)
    #expect(full.optimizerBytes == 8 * 21_664 && full.activationBytes == estimate.memory.bufferBytes)
    let bench = try CommandRunner.run([
      "bench", "--model", Self.model, "--batch", "2", "--seq", "24", "--targets", "all-linear", "--rank", "4",
      "--steps", "1", "--warmup", "0", "--threads", "1", "--json", "--base-precision", precision,
    ])
    #expect(bench.status == 0, "\(bench.errors)")
    let measured = try JSONDecoder().decode(BenchMemory.self, from: Data(bench.output.utf8))
    #expect(Double(estimate.memory.bufferBytes) / 1_048_576 == measured.bufferMB)
    #expect(Double(estimate.memory.baseBytes) / 1_048_576 == measured.baseMB)
    #expect(estimate.memory.basePrecision == measured.basePrecision)
    let text = try CommandRunner.run(["plan", "--jobs", jobs, "-np", "1"])
    #expect(text.output.contains("memory: base") && text.output.contains("per rank up to"), "\(text.output)")
    #expect(
      text.output.contains(
        "parameters: the adapter trains 4,096 (18.907%) of the model's 21,664; a full fine-tune at 2 × 24 tokens"
      ),
      "\(text.output)")
  }
}
