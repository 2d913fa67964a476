import Foundation
import Testing

@testable import swift_lora_dist

/// DoRA through the binary: `train --use-dora`, `eval` and `generate` of its PEFT folder,
/// `inspect`, `export` to PEFT (use_dora kept), the refused GGUF LoRA export, `merge`, and
/// DoRA with LoRA dropout.
@Suite(.serialized, .enabled(if: TrainCommandTests.modelAvailable, "the default model is not in the cache"))
struct DoRACommandTests {
  @Test func doraTrainsEvaluatesExportsAndMerges() throws {
    let folder = try TrainCommandTests.Folder()
    let data = try folder.write("sums.jsonl", TrainCommandTests.arithmetic)
    let output = folder.path + "/out"
    let trained = try CommandRunner.run([
      "train", "--model", TrainCommandTests.model, "--data", data, "--validation-data", data, "--output",
      output, "--steps", "2", "--batch-size", "2", "--micro-batch", "1", "--max-seq-len", "32", "--lr",
      "1e-2",
      "--use-dora", "--threads", "1",
    ])
    #expect(trained.status == 0, "\(trained.errors)")
    let config =
      try JSONSerialization.jsonObject(
        with: Data(contentsOf: URL(fileURLWithPath: output + "/adapter_config.json"))) as? [String: Any]
    #expect(config?["use_dora"] as? Bool == true)
    let metrics = try String(contentsOfFile: output + "/metrics.jsonl", encoding: .utf8)
    let final = try #require(
      metrics.split(separator: "\n").compactMap {
        (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
      }.last { $0["event"] as? String == "validation" }?["loss"] as? Double)

    // eval groups sequences into passes as the run's validation did (by default `--batch` is
    // the run's `--micro-batch`, from training_config.json), so the two agree bit for bit.
    // Another grouping changes products at float's last bit, which a bf16 base can turn into
    // 1e-4 (docs/training.md).
    let evaluated = try CommandRunner.run([
      "eval", "--model", TrainCommandTests.model, "--adapter", output, "--data", data, "--max-seq-len", "32",
      "--json",
    ])
    #expect(evaluated.status == 0, "\(evaluated.errors)")
    let line = try #require(evaluated.output.split(separator: "\n").last)
    let loss = try #require(
      (try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["loss"] as? Double)
    #expect(loss == final, "eval \(loss) against the run's \(final)")

    let inspected = try CommandRunner.run(["inspect", output + "/checkpoints"])
    #expect(inspected.status == 0 && inspected.output.contains("adapter: DoRA, r 8"), "\(inspected.output)")

    let checkpoint = output + "/checkpoints"
    let peft = try CommandRunner.run([
      "export", checkpoint, "--format", "peft", "--output", folder.path + "/peft",
    ])
    #expect(peft.status == 0, "\(peft.errors)")
    let exported = try String(contentsOfFile: folder.path + "/peft/adapter_config.json", encoding: .utf8)
    #expect(exported.contains("\"use_dora\" : true"), "\(exported)")
    let gguf = try CommandRunner.run([
      "export", checkpoint, "--format", "gguf", "--output", folder.path + "/a.gguf",
    ])
    #expect(gguf.status != 0 && gguf.errors.contains("DoRA adapter (use_dora)"), "\(gguf.errors)")
    #expect(!folder.exists("a.gguf"))

    // The merged model's loss is the adapter's (both with an fp32 base: a bf16 one would round
    // every rescaled row of the merged weights).
    let merged = folder.path + "/merged.gguf"
    let merge = try CommandRunner.run([
      "merge", "--model", TrainCommandTests.model, "--adapter", output, "--output", merged,
    ])
    #expect(merge.status == 0, "\(merge.errors)")
    func f32Loss(_ model: [String]) throws -> Double {
      let run = try CommandRunner.run(
        ["eval"] + model + ["--data", data, "--max-seq-len", "32", "--base-precision", "f32", "--json"])
      #expect(run.status == 0, "\(run.errors)")
      let line = try #require(run.output.split(separator: "\n").last)
      return try #require(
        (try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["loss"] as? Double)
    }
    let unmerged = try f32Loss(["--model", TrainCommandTests.model, "--adapter", output])
    let mergedLoss = try f32Loss(["--model", merged])
    #expect(abs(mergedLoss - unmerged) <= 1e-5 * unmerged, "merged model \(mergedLoss) against \(unmerged)")
  }

  /// With LoRA dropout (PEFT's DoRA form: one more frozen product per adapted linear).
  @Test func doraTrainsWithDropout() throws {
    let folder = try TrainCommandTests.Folder()
    let data = try folder.write("sums.jsonl", TrainCommandTests.arithmetic)
    let outcome = try CommandRunner.run([
      "train", "--model", TrainCommandTests.model, "--data", data, "--output", folder.path + "/out",
      "--steps", "2",
      "--batch-size", "2", "--micro-batch", "1", "--max-seq-len", "32", "--use-dora", "--dropout", "0.1",
      "--threads", "1",
    ])
    #expect(outcome.status == 0, "\(outcome.errors)")
    let config = try String(contentsOfFile: folder.path + "/out/adapter_config.json", encoding: .utf8)
    #expect(config.contains("\"use_dora\" : true") && config.contains("\"lora_dropout\" : 0.1"), "\(config)")
  }
}
