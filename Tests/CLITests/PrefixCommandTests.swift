import Foundation
import Testing

@testable import swift_lora_dist

/// Prompt and prefix tuning through the binary: `train` with LoRA and a prefix, `eval` and
/// `generate` of its PEFT folder, `export` to PEFT and the refused GGUF export, and flags
/// that cannot work refused before anything is written.
@Suite(.serialized, .enabled(if: TrainCommandTests.modelAvailable, "the default model is not in the cache"))
struct PrefixCommandTests {
  @Test func loraWithAPrefixTrainsEvaluatesGeneratesAndExports() throws {
    let folder = try TrainCommandTests.Folder()
    let data = try folder.write("sums.jsonl", TrainCommandTests.arithmetic)
    let output = folder.path + "/out"
    let trained = try CommandRunner.run([
      "train", "--model", TrainCommandTests.model, "--data", data, "--validation-data", data, "--output",
      output,
      "--steps", "2", "--batch-size", "2", "--micro-batch", "1", "--max-seq-len", "32", "--lr", "1e-2",
      "--prefix-tokens", "4", "--prefix-projection", "16", "--threads", "1",
    ])
    #expect(trained.status == 0, "\(trained.errors)")
    #expect(trained.output.contains("prefix tuning, 4 virtual tokens, projection 16"), "\(trained.output)")
    #expect(
      folder.exists("out/adapter_config.json") && folder.exists("out/prefix_tuning/adapter_model.safetensors")
    )
    let metrics = try String(contentsOfFile: output + "/metrics.jsonl", encoding: .utf8)
    let final = try #require(
      metrics.split(separator: "\n").compactMap {
        (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
      }.last { $0["event"] as? String == "validation" }?["loss"] as? Double)

    // By default, the run's validation grouping (`--micro-batch 1`, from training_config.json):
    // the losses agree bit for bit.
    let evaluated = try CommandRunner.run([
      "eval", "--model", TrainCommandTests.model, "--adapter", output, "--data", data, "--max-seq-len", "32",
      "--json",
    ])
    #expect(evaluated.status == 0, "\(evaluated.errors)")
    let line = try #require(evaluated.output.split(separator: "\n").last)
    let loss = try #require(
      (try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["loss"] as? Double)
    #expect(loss == final, "eval \(loss) against the run's \(final)")

    let generated = try CommandRunner.run([
      "generate", "--model", TrainCommandTests.model, "--adapter", output, "--prompt", "What is 2 plus 2?",
      "--max-tokens", "3", "--json",
    ])
    #expect(generated.status == 0, "\(generated.errors)")

    let checkpoint = output + "/checkpoints"
    let peft = try CommandRunner.run([
      "export", checkpoint, "--format", "peft", "--output", folder.path + "/peft",
    ])
    #expect(peft.status == 0 && folder.exists("peft/prefix_tuning/adapter_config.json"), "\(peft.errors)")
    let gguf = try CommandRunner.run([
      "export", checkpoint, "--format", "gguf", "--output", folder.path + "/a.gguf",
    ])
    #expect(
      gguf.status != 0 && gguf.errors.contains("llama.cpp has no prompt or prefix tuning"), "\(gguf.errors)")
    #expect(!folder.exists("a.gguf"))
  }

  @Test func flagsThatCannotWorkAreRefused() throws {
    let folder = try TrainCommandTests.Folder()
    let data = try folder.write("sums.jsonl", TrainCommandTests.arithmetic)
    for (flags, words) in [
      (["--prompt-tokens", "4", "--prefix-tokens", "4"], "not both"),
      (["--prompt-tokens", "4", "--prefix-projection", "8"], "set prefix_tokens as well"),
      (["--targets", "none"], "prompt_tokens or prefix_tokens"),
      (["--prefix-tokens", "9000"], "need 9032 positions"),
    ] {
      let outcome = try CommandRunner.run(
        [
          "train", "--model", TrainCommandTests.model, "--data", data, "--output", folder.path + "/out",
          "--steps", "1",
          "--max-seq-len", "32",
        ] + flags)
      #expect(outcome.status != 0 && outcome.errors.contains(words), "\(flags): \(outcome.errors)")
      #expect(!folder.exists("out/adapter_config.json"))
    }
  }
}
