import Foundation
import LoRATraining
import Testing

@testable import LoRACoordinator

/// Prompt and prefix tuning in job files: read into the adapter's configuration, a sweep of
/// them run as separate units, and every setting that cannot work refused at its line.
@Suite struct VirtualTokenJobFileTests {
  @Test func settingsReachTheAdapterAndASweepIsNotFused() throws {
    let folder = try JobFolder()
    let job = try folder.load(
      """
      model: model.gguf
      output: o
      adapters:
        - { name: lp, data: data/a.jsonl, prefix_tokens: 8, prefix_projection: 32 }
        - { name: p, data: data/a.jsonl, targets: none, prompt_tokens: 4 }
        - { name: s, data: data/a.jsonl, prompt_tokens: 2, sweep: { lr: [1.0e-3, 1.0e-2] } }
      """)
    let lp = try #require(job.adapters.first { $0.name == "lp" }).settings.loraConfig
    #expect(lp.virtualTokens == .init(kind: .prefix, tokens: 8, projection: 32))
    #expect(lp.targetModules == ["q_proj", "v_proj"])
    let p = try #require(job.adapters.first { $0.name == "p" }).settings.loraConfig
    #expect(p.virtualTokens == .init(kind: .prompt, tokens: 4) && p.targetModules.isEmpty)
    let sweep = job.adapters.filter { $0.name.hasPrefix("s") }
    #expect(sweep.count == 2 && sweep.allSatisfy { $0.group == nil })
  }

  @Test func badSettingsAreRefusedAtTheirLine() throws {
    let folder = try JobFolder()
    func load(_ entry: String) throws {
      _ = try folder.load(
        "model: model.gguf\noutput: o\nadapters:\n  - { name: a, data: data/a.jsonl, \(entry) }\n")
    }
    expectFailure(.invalidValue, line: 4, keyPath: "adapters[0].prompt_tokens", mentions: ["cannot be fused"])
    {
      try load("prompt_tokens: 4, placement: fused")
    }
    expectFailure(.invalidValue, line: 4, keyPath: "adapters[0].prefix_tokens", mentions: ["not both"]) {
      try load("prompt_tokens: 4, prefix_tokens: 4")
    }
    expectFailure(
      .invalidValue, line: 4, keyPath: "adapters[0].prefix_projection", mentions: ["prefix_tokens"]
    ) {
      try load("prompt_tokens: 4, prefix_projection: 16")
    }
    expectFailure(.invalidValue, line: 4, keyPath: "adapters[0].targets", mentions: ["nothing to train"]) {
      try load("targets: none")
    }
    expectFailure(.invalidValue, line: 4, keyPath: "adapters[0].prompt_tokens", mentions: ["at least 1"]) {
      try load("prompt_tokens: 0")
    }
  }

  @Test func aParentWithVirtualTokensIsRefused() throws {
    let folder = try JobFolder()
    expectFailure(
      .invalidValue, line: 5, keyPath: "adapters[1].parent", mentions: ["'root'", "prefix tuning"]
    ) {
      let job = try folder.load(
        """
        model: model.gguf
        output: o
        adapters:
          - { name: root, data: data/a.jsonl, prefix_tokens: 4 }
          - { name: leaf, data: data/a.jsonl, parent: root }
        """)
      _ = job.levels
    }
  }
}
