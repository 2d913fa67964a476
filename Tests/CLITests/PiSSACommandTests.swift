import Foundation
import Testing

@testable import swift_lora_dist

/// PiSSA through the binary (fp32 base): `train --init pissa` starts exactly at the base (its update-0
/// validation is the base's `eval`), writes the plain rank-2r PEFT adapter whose `eval` is
/// the run's last validation, exports to GGUF LoRA; conflicting flags are refused.
@Suite(.serialized, .enabled(if: TrainCommandTests.modelAvailable, "the default model is not in the cache"))
struct PiSSACommandTests {
  static func loss(_ output: String) throws -> Double {
    let line = try #require(output.split(separator: "\n").last)
    return try #require(
      (try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["loss"] as? Double)
  }

  @Test func pissaStartsAtTheBaseAndExportsAsRank2r() throws {
    let folder = try TrainCommandTests.Folder()
    let data = try folder.write("sums.jsonl", TrainCommandTests.arithmetic)
    // An fp32 base: a bf16 one amplifies a last-bit difference between the training
    // adapter's two terms and the exported one's single product (PiSSATests checks bf16's step 0).
    let evalFlags = ["--data", data, "--max-seq-len", "32", "--base-precision", "f32", "--json"]
    let base = try CommandRunner.run(["eval", "--model", TrainCommandTests.model] + evalFlags)
    #expect(base.status == 0, "\(base.errors)")
    let output = folder.path + "/out"
    let trained = try CommandRunner.run([
      "train", "--model", TrainCommandTests.model, "--data", data, "--validation-data", data, "--output",
      output, "--steps", "2", "--batch-size", "2", "--micro-batch", "1", "--max-seq-len", "32", "--lr",
      "1e-3",
      "--init", "pissa", "--eval-every", "1", "--threads", "1", "--base-precision", "f32",
    ])
    #expect(trained.status == 0, "\(trained.errors)")
    let validations = try String(contentsOfFile: output + "/metrics.jsonl", encoding: .utf8)
      .split(separator: "\n").compactMap {
        (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
      }.filter { $0["event"] as? String == "validation" }
    let first = try #require(validations.first?["loss"] as? Double)
    let last = try #require(validations.last?["loss"] as? Double)
    let baseLoss = try Self.loss(base.output)
    #expect(validations.first?["step"] as? Int == 0)
    // Bit for bit in one pass (PiSSATests); here eval and validation batch the rows differently.
    #expect(abs(first - baseLoss) <= 1e-6 * baseLoss, "update 0 \(first) against the base's \(baseLoss)")
    #expect(last < first)

    let config =
      try JSONSerialization.jsonObject(
        with: Data(contentsOf: URL(fileURLWithPath: output + "/adapter_config.json"))) as? [String: Any]
    #expect(config?["r"] as? Int == 16 && config?["lora_alpha"] as? Double == 32, "\(config ?? [:])")
    let adapted = try CommandRunner.run(
      ["eval", "--model", TrainCommandTests.model, "--adapter", output] + evalFlags)
    #expect(adapted.status == 0, "\(adapted.errors)")
    let adaptedLoss = try Self.loss(adapted.output)
    #expect(abs(adaptedLoss - last) <= 1e-5 * last, "eval \(adaptedLoss) against the run's \(last)")
    let gguf = try CommandRunner.run([
      "export", output + "/checkpoints", "--format", "gguf", "--output", folder.path + "/a.gguf",
    ])
    #expect(gguf.status == 0 && folder.exists("a.gguf"), "\(gguf.errors)")
  }

  @Test func pissaWithDoRAOrAnInitAdapterIsRefused() throws {
    let folder = try TrainCommandTests.Folder()
    let data = try folder.write("sums.jsonl", TrainCommandTests.arithmetic)
    for (flags, words) in [
      (["--init", "pissa", "--use-dora"], "with use_dora is not supported"),
      (["--init", "pissa_niter_0"], "(N ≥ 1)"),
      (["--init", "pissa", "--init-adapter", folder.path], "choose one"),
    ] {
      let outcome = try CommandRunner.run(
        [
          "train", "--model", TrainCommandTests.model, "--data", data, "--output", folder.path + "/out",
          "--steps", "1",
        ]
          + flags)
      #expect(outcome.status != 0 && outcome.errors.contains(words), "\(flags): \(outcome.errors)")
      #expect(!folder.exists("out"))
    }
  }
}
