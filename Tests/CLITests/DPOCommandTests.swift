import Foundation
import Testing

@testable import swift_lora_dist

/// DPO through the binary: `train --objective dpo` and `eval --objective dpo` of its output,
/// which reports what the run's last validation did; the base alone scores log 2 (every
/// reward 0); refusals name the flag or the file and line.
@Suite(.serialized, .enabled(if: TrainCommandTests.modelAvailable, "the default model is not in the cache"))
struct DPOCommandTests {
  static let pairs =
    (0..<8).map { i in
      let words = ["cat", "dog", "bird", "fish", "horse", "mouse", "sheep", "goat"]
      return
        #"{"prompt": "Name an animal that starts with \#(words[i].prefix(1)):", "chosen": " \#(words[i])", "#
        + #""rejected": " the number \#(i * 7)"}"#
    }.joined(separator: "\n") + "\n"

  static func json(_ output: String) throws -> [String: Any] {
    let line = try #require(output.split(separator: "\n").last)
    return try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
  }

  @Test func evalScoresWhatTrainingValidated() throws {
    let folder = try TrainCommandTests.Folder()
    let data = try folder.write("pairs.jsonl", Self.pairs)
    let output = folder.path + "/out"
    let trained = try CommandRunner.run([
      "train", "--model", TrainCommandTests.model, "--data", data, "--validation-data", data, "--output",
      output,
      "--objective", "dpo", "--beta", "0.5", "--steps", "2", "--batch-size", "2", "--micro-batch", "1",
      "--max-seq-len", "48", "--lr", "1e-2", "--threads", "1",
    ])
    #expect(trained.status == 0, "\(trained.errors)")
    let metrics = try String(contentsOfFile: output + "/metrics.jsonl", encoding: .utf8)
    let validation = try #require(
      metrics.split(separator: "\n").compactMap {
        (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
      }.last { $0["event"] as? String == "validation" })
    let flags = ["--data", data, "--objective", "dpo", "--beta", "0.5", "--max-seq-len", "48", "--json"]
    // By default pairs are grouped into passes as the run's validation (`--micro-batch 1`,
    // from training_config.json) did, so the two agree bit for bit (another grouping can
    // differ by 1e-4 on a bf16 base).
    let scored = try CommandRunner.run(
      ["eval", "--model", TrainCommandTests.model, "--adapter", output] + flags)
    #expect(scored.status == 0, "\(scored.errors)")
    let result = try Self.json(scored.output)
    let (loss, final) = (try #require(result["loss"] as? Double), try #require(validation["loss"] as? Double))
    #expect(loss == final, "eval \(loss) against the run's \(final)")
    let accuracy = (result["metrics"] as? [String: Any])?["reward_accuracy"] as? Double
    #expect(accuracy == validation["reward_accuracy"] as? Double, "\(result)")
    #expect(result["pairs"] as? Int == 8 && loss < log(2))

    let base = try Self.json(
      try CommandRunner.run(["eval", "--model", TrainCommandTests.model] + flags).output)
    #expect(abs((base["loss"] as? Double ?? 0) - log(2)) < 1e-9, "\(base)")
    #expect((base["metrics"] as? [String: Any])?["reward_accuracy"] as? Double == 0)
  }

  @Test func badDPOEvaluationsAreRefusedByName() throws {
    let folder = try TrainCommandTests.Folder()
    let data = try folder.write(
      "pairs.jsonl",
      #"{"prompt": "p", "chosen": " a", "rejected": " b"}"# + "\n" + #"{"prompt": "p", "chosen": " a"}"#
        + "\n")
    let cases: [([String], String)] = [
      (["--merged"], "--merged and --exact-match apply to sft"),
      (["--exact-match"], "--merged and --exact-match apply to sft"),
      (["--beta", "0"], "--beta must be positive, got 0.0"),
      ([], "\(data):2"),
    ]
    for (flags, message) in cases {
      let outcome = try CommandRunner.run(
        ["eval", "--model", TrainCommandTests.model, "--data", data, "--objective", "dpo"] + flags)
      #expect(outcome.status != 0, "\(flags) was accepted")
      #expect(outcome.errors.contains(message), "\(flags): \(outcome.errors)")
    }
    let unknown = try CommandRunner.run([
      "eval", "--model", TrainCommandTests.model, "--data", data, "--objective", "ppo",
    ])
    #expect(unknown.status != 0 && unknown.errors.contains("--objective is sft or dpo, got 'ppo'"))
  }

  /// Two epochs of 8 pairs: the reference is scored once (reported and recorded), unless
  /// `--no-precompute-reference`; with SFT the flag is refused by its key.
  @Test func aRunOfTwoEpochsScoresTheReferenceOnce() throws {
    let folder = try TrainCommandTests.Folder()
    let data = try folder.write("pairs.jsonl", Self.pairs)
    func train(_ output: String, _ flags: [String]) throws -> CommandRunner.Outcome {
      try CommandRunner.run(
        [
          "train", "--model", TrainCommandTests.model, "--data", data, "--output", folder.path + "/" + output,
          "--objective", "dpo", "--steps", "4", "--batch-size", "4", "--micro-batch", "2", "--max-seq-len",
          "48", "--threads", "1",
        ] + flags)
    }
    func events(_ output: String) throws -> [String] {
      try String(contentsOfFile: folder.path + "/" + output + "/metrics.jsonl", encoding: .utf8)
        .split(separator: "\n").compactMap {
          ((try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any])?["event"] as? String
        }
    }
    let once = try train("once", [])
    #expect(once.status == 0, "\(once.errors)")
    #expect(once.output.contains(#"{"event":"reference","pairs":8,"seconds":"#), "\(once.output)")
    let recorded = try events("once")
    #expect(recorded.first == "reference" && recorded.filter { $0 == "reference" }.count == 1, "\(recorded)")
    let passes = try train("passes", ["--no-precompute-reference"])
    #expect(passes.status == 0 && !passes.output.contains(#""event":"reference""#), "\(passes.output)")
    #expect(try !events("passes").contains("reference"))

    let sft = try CommandRunner.run([
      "train", "--model", TrainCommandTests.model, "--data", data, "--output", folder.path + "/sft",
      "--steps", "1", "--precompute-reference",
    ])
    #expect(
      sft.status != 0 && sft.errors.contains("precompute_reference applies to objective: dpo"),
      "\(sft.errors)")
    #expect(!folder.exists("sft/metrics.jsonl"))
  }
}
