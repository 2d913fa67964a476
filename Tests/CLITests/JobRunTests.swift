import Foundation
import Testing

@testable import swift_lora_dist

/// `train --jobs` through the binary: adapters fused and alone from one job file, each with
/// its own outputs and one combined report; a bad job file fails before any model loads.
@Suite(.serialized, .enabled(if: TrainCommandTests.modelAvailable, "the default model is not in the cache"))
struct JobRunTests {
  @Test func aJobTrainsFusedAndSeparateAdaptersWithTheirOwnOutputs() throws {
    let folder = try TrainCommandTests.Folder()
    _ = try folder.write("sums.jsonl", TrainCommandTests.arithmetic)
    _ = try folder.write(
      "words.jsonl", TrainCommandTests.arithmetic.replacingOccurrences(of: "plus", with: "and"))
    let job = try folder.write(
      "jobs.yaml",
      """
      model: \(TrainCommandTests.model)
      output: out
      defaults: { steps: 2, batch_size: 2, micro_batch: 1, max_seq_len: 32, lr: 1.0e-3, checkpoint_every: 0 }
      adapters:
        - { name: sums, data: sums.jsonl, format: prompt_completion, group: pair, validation_data: sums.jsonl }
        - { name: words, data: words.jsonl, format: prompt_completion, group: pair, rank: 4 }
        - { name: alone, data: sums.jsonl, format: prompt_completion, tokens_per_batch: 40 }
      """)
    let outcome = try CommandRunner.run(["train", "--jobs", job, "--threads", "1"])
    #expect(outcome.status == 0, "\(outcome.errors)")
    #expect(outcome.output.contains("fused sums, words"), "\(outcome.output)")
    for name in ["sums", "words", "alone"] {
      for file in ["adapter_config.json", "adapter_model.safetensors", "metrics.jsonl", "report.html"] {
        #expect(folder.exists("out/\(name)/\(file)"), "\(name)/\(file)")
      }
      #expect(folder.exists("out/\(name)/checkpoints/step-00000002.sldckpt"), "\(name) checkpoint")
    }
    #expect(folder.exists("out/report.html"))
    // tokens_per_batch 40 over examples of 13 tokens on average: batches of 3 sequences.
    let alone = try String(contentsOfFile: folder.path + "/out/alone/training_config.json", encoding: .utf8)
    #expect(alone.contains("\"training.batchSize\" : \"3\""), "\(alone)")
    let words = try String(contentsOfFile: folder.path + "/out/words/adapter_config.json", encoding: .utf8)
    #expect(words.contains("\"r\" : 4"))
    let metrics = try String(contentsOfFile: folder.path + "/out/sums/metrics.jsonl", encoding: .utf8)
    #expect(metrics.contains("\"adapter\":\"sums\"") && metrics.contains("\"event\":\"validation\""))
  }

  @Test func successiveHalvingRetiresTheWorseMemberAndRemembersIt() throws {
    let folder = try TrainCommandTests.Folder()
    _ = try folder.write("sums.jsonl", TrainCommandTests.arithmetic)
    let job = try folder.write(
      "jobs.yaml",
      """
      model: \(TrainCommandTests.model)
      output: out
      defaults: { steps: 4, batch_size: 2, micro_batch: 1, max_seq_len: 32, lr: 1.0e-3, checkpoint_every: 0 }
      adapters:
        - name: s
          data: sums.jsonl
          validation_data: sums.jsonl
          format: prompt_completion
          sweep: { rank: [2, 4] }
          successive_halving: { rungs: [2] }
      """)
    let first = try CommandRunner.run(["train", "--jobs", job, "--threads", "1"])
    #expect(first.status == 0, "\(first.errors)")
    #expect(first.output.contains("rank") && first.output.contains("was enough"), "\(first.output)")
    let retired = ["s-r2", "s-r4"].filter { folder.exists("out/\($0)/retired.json") }
    #expect(retired.count == 1, "\(retired)")
    let survivor = retired == ["s-r2"] ? "s-r4" : "s-r2"
    #expect(folder.exists("out/\(retired[0])/checkpoints/step-00000002.sldckpt"))
    #expect(folder.exists("out/\(survivor)/checkpoints/step-00000004.sldckpt"))
    // Run again: the retired member stays where it stopped.
    #expect(try CommandRunner.run(["train", "--jobs", job, "--threads", "1"]).status == 0)
    #expect(!folder.exists("out/\(retired[0])/checkpoints/step-00000004.sldckpt"))
  }

  @Test func aBadJobFileFailsBeforeLoadingTheModel() throws {
    let folder = try TrainCommandTests.Folder()
    _ = try folder.write("sums.jsonl", TrainCommandTests.arithmetic)
    let job = try folder.write(
      "jobs.yaml",
      """
      model: /nonexistent/model.gguf
      adapters:
        - name: sums
          data: sums.jsonl
          lerning_rate: 0.1
      """)
    let outcome = try CommandRunner.run(["train", "--jobs", job])
    #expect(outcome.status != 0)
    #expect(
      outcome.errors.contains("jobs.yaml:5") && outcome.errors.contains("lerning_rate"), "\(outcome.errors)")
  }
}
