import Foundation
import Testing

@testable import swift_lora_dist

/// A tree through the binary: `plan` draws it, `train --jobs` runs it level by level, and a
/// node given to `eval` or `export --flatten` comes with its whole chain.
@Suite(.serialized, .enabled(if: TrainCommandTests.modelAvailable, "the default model is not in the cache"))
struct TreeCommandTests {
  @Test func aNodeIsUsedWithItsWholeChain() throws {
    let folder = try TrainCommandTests.Folder()
    let data = try folder.write("sums.jsonl", TrainCommandTests.arithmetic)
    let job = try folder.write(
      "jobs.yaml",
      """
      model: \(TrainCommandTests.model)
      output: out
      defaults: { steps: 2, batch_size: 2, micro_batch: 1, max_seq_len: 32, lr: 3.0e-3, checkpoint_every: 0,
                  format: prompt_completion, validation_data: sums.jsonl }
      adapters:
        - { name: general, data: sums.jsonl }
        - { name: narrow, data: sums.jsonl, parent: general, targets: [o_proj], rank: 2 }
      """)
    let plan = try CommandRunner.run(["plan", "--jobs", job, "-np", "1"])
    #expect(
      plan.status == 0 && plan.output.contains("tree:") && plan.output.contains("└─ narrow"), "\(plan.output)"
    )

    let trained = try CommandRunner.run(["train", "--jobs", job, "--threads", "1"])
    #expect(trained.status == 0, "\(trained.errors)")
    #expect(folder.exists("out/narrow/chain.json") && !folder.exists("out/general/chain.json"))

    func loss(_ adapter: String) throws -> Double {
      let outcome = try CommandRunner.run([
        "eval", "--model", TrainCommandTests.model, "--adapter", adapter, "--data", data, "--max-seq-len",
        "32",
        "--json",
      ])
      #expect(outcome.status == 0, "\(outcome.errors)")
      let line = try #require(outcome.output.split(separator: "\n").last)
      let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
      return try #require(object?["loss"] as? Double)
    }
    let flat = folder.path + "/flat"
    let exported = try CommandRunner.run([
      "export", folder.path + "/out/narrow", "--flatten", "--format", "peft", "--output", flat,
    ])
    #expect(exported.status == 0 && exported.output.contains("over general"), "\(exported.errors)")
    let own = try CommandRunner.run([
      "export", folder.path + "/out/narrow", "--format", "peft", "--output", folder.path + "/own",
    ])
    #expect(own.status == 0 && own.errors.contains("tree node over general"), "\(own.errors)")
    // The node, its flattened export and its own ΔW alone: the first two are one model.
    let (node, flattened, alone) = (
      try loss(folder.path + "/out/narrow"), try loss(flat), try loss(folder.path + "/own")
    )
    #expect(abs(node - flattened) <= 1e-5 * node, "node \(node), flattened \(flattened)")
    #expect(abs(node - alone) > 1e-4 * node, "the chain made no difference: \(node) vs \(alone)")
    let notANode = try CommandRunner.run([
      "export", folder.path + "/out/general", "--flatten", "--format", "peft", "--output", folder.path + "/x",
    ])
    #expect(notANode.status != 0 && notANode.errors.contains("is no tree node"), "\(notANode.errors)")
    #expect(!folder.exists("x"))
  }
}
