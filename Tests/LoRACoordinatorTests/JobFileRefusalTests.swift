import Foundation
import LoRAModel
import LoRATraining
import Testing

@testable import LoRACoordinator

/// Job files that are refused: unknown keys, wrong types and duplicates, missing files and
/// clashing outputs, more groups than ranks, values out of range; each names the file, line
/// and key path (`expectFailure`, `JobFolder` in JobFileTests.swift).
@Suite struct JobFileRefusalTests {
  // MARK: - Unknown keys, wrong types, duplicates

  @Test func unknownAdapterKeyNamesLineAndKeyPath() throws {
    let folder = try JobFolder()
    expectFailure(
      .unknownKey, line: 8, keyPath: "adapters[2].lerning_rate", mentions: ["the adapter keys are", "lr"]
    ) {
      _ = try folder.load(
        """
        model: model.gguf
        output: out
        adapters:
          - { name: a, data: data/a.jsonl }
          - { name: b, data: data/b.jsonl }
          - name: c
            data: data/c.jsonl
            lerning_rate: 0.1
        """)
    }
    let error = try #require(throws: JobFileError.self) {
      _ = try folder.load("model: m\nadapters: []\nmodle: x\n")
    }
    #expect(
      error.description.hasSuffix(
        "jobs.yaml:3: modle: unknown key; the top-level keys are model, base_precision, attention_precision, output, placement, defaults, adapters"
      ))
  }

  @Test func unknownDefaultsAndSweepKeys() throws {
    let folder = try JobFolder()
    expectFailure(.unknownKey, line: 2, keyPath: "defaults.output", mentions: ["defaults keys"]) {
      _ = try folder.load("model: m\ndefaults: { output: x }\nadapters: [{ name: a, data: data/a.jsonl }]\n")
    }
    expectFailure(.unknownKey, line: 5, keyPath: "adapters[0].sweep.rnak", mentions: ["sweepable keys are"]) {
      _ = try folder.load(
        """
        model: m
        output: out
        adapters:
          - name: a
            sweep: { rnak: [1, 2] }
            data: data/a.jsonl
        """)
    }
    expectFailure(.unknownKey, line: 3, keyPath: "adapters[0].successive_halving.rung") {
      _ = try folder.load(
        """
        model: m
        output: out
        adapters: [{ name: a, data: data/a.jsonl, sweep: { lr: [0.1, 0.2] }, successive_halving: { rung: [1] } }]
        """)
    }
  }

  @Test func wrongTypesAndDuplicateKeys() throws {
    let folder = try JobFolder()
    expectFailure(
      .wrongType, line: 5, keyPath: "adapters[0].rank",
      mentions: ["a rank (a whole number) or auto", "eight"]
    ) {
      _ = try folder.load(
        "model: m\noutput: o\nadapters:\n  - name: a\n    rank: eight\n    data: data/a.jsonl\n")
    }
    expectFailure(.wrongType, line: 3, keyPath: "adapters[0].targets", mentions: ["a list"]) {
      _ = try folder.load(
        "model: m\noutput: o\nadapters: [{ name: a, data: data/a.jsonl, targets: { q: 1 } }]\n")
    }
    expectFailure(.duplicateKey, line: 6, keyPath: "rank", mentions: ["given twice"]) {
      _ = try folder.load(
        "model: m\noutput: o\nadapters:\n  - name: a\n    rank: 4\n    rank: 8\n    data: data/a.jsonl\n")
    }
    expectFailure(.missingKey, line: 3, keyPath: "adapters[0]", mentions: ["'data' is required"]) {
      _ = try folder.load("model: m\noutput: o\nadapters: [{ name: a }]\n")
    }
    expectFailure(.missingKey, line: 3, keyPath: "adapters[0]", mentions: ["output"]) {
      _ = try folder.load("model: m\nadapters:\n  - { name: a, data: data/a.jsonl }\n")
    }
    expectFailure(.missingKey, line: 1, keyPath: "", mentions: ["'model' is required"]) {
      _ = try folder.load("output: o\nadapters: [{ name: a, data: data/a.jsonl }]\n")
    }
    expectFailure(.unreadable, line: 2, keyPath: nil, mentions: ["not valid YAML"]) {
      _ = try folder.load("model: [unclosed\noutput: o\n")
    }
  }

  @Test func duplicateNamesAlsoAfterSweepExpansion() throws {
    let folder = try JobFolder()
    expectFailure(
      .duplicateName, line: 5, keyPath: "adapters[1].name", mentions: ["'a' is used twice", "adapters[0]"]
    ) {
      _ = try folder.load(
        """
        model: m
        output: o
        adapters:
          - { name: a, data: data/a.jsonl }
          - { name: a, data: data/b.jsonl }
        """)
    }
    expectFailure(.duplicateName, line: 6, keyPath: "adapters[1].sweep", mentions: ["'x-r2' is used twice"]) {
      _ = try folder.load(
        """
        model: m
        output: o
        adapters:
          - { name: x-r2, data: data/a.jsonl }
          - name: x
            sweep: { rank: [2, 4] }
            data: data/b.jsonl
        """)
    }
    expectFailure(.invalidValue, line: 3, keyPath: "adapters[0].name", mentions: ["letters, digits"]) {
      _ = try folder.load("model: m\noutput: o\nadapters: [{ name: a b, data: data/a.jsonl }]\n")
    }
    // rank: auto decides by the validation loss, climbs its own ladder and is never fused.
    expectFailure(.missingKey, line: 5, keyPath: "adapters[0].rank", mentions: ["validation_data"]) {
      _ = try folder.load(
        "model: m\noutput: o\nadapters:\n  - name: a\n    rank: auto\n    data: data/a.jsonl\n")
    }
    expectFailure(.invalidValue, line: 5, keyPath: "adapters[0].sweep", mentions: ["cannot be swept"]) {
      _ = try folder.load(
        """
        model: m
        output: o
        adapters:
          - { name: a, data: data/a.jsonl, rank: auto, validation_fraction: 0.1,
              sweep: { lr: [0.1, 0.2] } }
        """)
    }
    expectFailure(.invalidValue, line: 4, keyPath: "adapters[0].rank_ladder", mentions: ["cannot be fused"]) {
      _ = try folder.load(
        """
        model: m
        output: o
        adapters:
          - { name: a, data: data/a.jsonl, rank_ladder: [2, 4], validation_fraction: 0.1, placement: fused }
        """)
    }
  }

  // MARK: - Files and outputs

  @Test func missingDataAndValidationFilesFailValidation() throws {
    let folder = try JobFolder()
    let job = try folder.load(
      "model: model.gguf\noutput: o\nadapters:\n  - { name: a, data: data/a.jsonl }\n  - { name: b, data: data/none.jsonl }\n"
    )
    expectFailure(.missingFile, line: 5, keyPath: "adapters[1].data", mentions: ["none.jsonl"]) {
      try job.validate(ranks: 2)
    }
    let validation = try folder.load(
      "model: model.gguf\noutput: o\ndefaults:\n  validation_data: data/gone.jsonl\nadapters: [{ name: a, data: data/a.jsonl }]\n"
    )
    expectFailure(.missingFile, line: 4, keyPath: "defaults.validation_data", mentions: ["gone.jsonl"]) {
      try validation.validate(ranks: 1)
    }
    let model = try folder.load(
      "model: nothing.gguf\noutput: o\nadapters: [{ name: a, data: data/a.jsonl }]\n")
    expectFailure(.missingFile, line: nil, keyPath: "model", mentions: ["nothing.gguf"]) {
      try model.validate(ranks: 1)
    }
  }

  @Test func outputFolderSharedOrNested() throws {
    let folder = try JobFolder()
    expectFailure(
      .sharedOutput, line: 5, keyPath: "adapters[1].output", mentions: ["'a' and 'b' would both write"]
    ) {
      _ = try folder.load(
        """
        model: m
        output: o
        adapters:
          - { name: a, data: data/a.jsonl, output: same }
          - { name: b, data: data/b.jsonl, output: ./same/ }
        """)
    }
    expectFailure(.sharedOutput, line: 2, keyPath: "output", mentions: ["one inside the other"]) {
      _ = try folder.load(
        """
        model: m
        output: o
        adapters:
          - { name: a, data: data/a.jsonl, output: o }
          - { name: b, data: data/b.jsonl }
        """)
    }
  }

  // MARK: - Ranks

  @Test func moreGroupsThanRanks() throws {
    let folder = try JobFolder()
    let job = try folder.load(
      """
      model: model.gguf
      output: o
      adapters:
        - { name: a, data: data/a.jsonl, placement: separate }
        - { name: b, data: data/b.jsonl, group: g }
        - { name: c, data: data/c.jsonl, placement: separate }
      """)
    expectFailure(
      .tooFewRanks, line: 6, keyPath: "adapters[2]", mentions: ["needs 3 groups", "on 2 rank(s)"]
    ) {
      try job.validate(ranks: 2)
    }
    try job.validate(ranks: 3)
    let asking = try folder.load(
      "model: model.gguf\noutput: o\nadapters:\n  - { name: a, data: data/a.jsonl, ranks: 2, placement: separate }\n"
        + "  - { name: b, data: data/b.jsonl, ranks: 2, placement: separate }\n")
    expectFailure(.tooFewRanks, line: 5, keyPath: "adapters[1].ranks", mentions: ["ask for 4 ranks"]) {
      try asking.validate(ranks: 3)
    }
    expectFailure(.tooFewRanks, line: nil, keyPath: nil, mentions: ["at least 1 rank"]) {
      try job.validate(ranks: 0)
    }
  }

  // MARK: - Values

  @Test func invalidValues() throws {
    let folder = try JobFolder()
    func entry(_ extra: String) throws -> JobFile {
      try folder.load("model: m\noutput: o\nadapters:\n  - name: a\n    data: data/a.jsonl\n    \(extra)\n")
    }
    expectFailure(.invalidValue, line: 6, keyPath: "adapters[0].rank", mentions: ["at least 1, got 0"]) {
      _ = try entry("rank: 0")
    }
    expectFailure(.invalidValue, line: 6, keyPath: "adapters[0].lr", mentions: ["positive"]) {
      _ = try entry("lr: 0")
    }
    expectFailure(.invalidValue, line: 6, keyPath: "adapters[0].lr") { _ = try entry("lr: -1.0e-4") }
    expectFailure(
      .invalidValue, line: 6, keyPath: "adapters[0].placement", mentions: ["sideways", "auto, shared"]
    ) {
      _ = try entry("placement: sideways")
    }
    expectFailure(.invalidValue, line: 6, keyPath: "adapters[0].format", mentions: ["prompt_completion"]) {
      _ = try entry("format: csv")
    }
    expectFailure(.invalidValue, line: 6, keyPath: "adapters[0].targets", mentions: ["xx_proj"]) {
      _ = try entry("targets: [q_proj, xx_proj]")
    }
    expectFailure(.invalidValue, line: 6, keyPath: "adapters[0].micro_batch", mentions: ["not a multiple"]) {
      _ = try entry("micro_batch: 3")
    }
    expectFailure(.conflict, line: 6, keyPath: "adapters[0].tokens_per_batch", mentions: ["not both"]) {
      _ = try entry("tokens_per_batch: 100\n    batch_size: 8")
    }
    expectFailure(.invalidValue, line: 1, keyPath: "placement") {
      _ = try folder.load(
        "placement: everywhere\nmodel: m\noutput: o\nadapters: [{ name: a, data: data/a.jsonl }]\n")
    }
  }

  @Test func invalidSweepsAndHalving() throws {
    let folder = try JobFolder()
    func entry(_ extra: String) throws -> JobFile {
      try folder.load(
        "model: m\noutput: o\ndefaults: { steps: 60 }\nadapters:\n  - name: a\n    data: data/a.jsonl\n"
          + "    validation_fraction: 0.1\n    \(extra)\n")
    }
    expectFailure(.invalidValue, line: 8, keyPath: "adapters[0].sweep.data", mentions: ["cannot be swept"]) {
      _ = try entry("sweep: { data: [x.jsonl] }")
    }
    expectFailure(.invalidValue, line: 8, keyPath: "adapters[0].sweep.rank", mentions: ["empty list"]) {
      _ = try entry("sweep: { rank: [] }")
    }
    expectFailure(.invalidValue, line: 8, keyPath: "adapters[0].sweep", mentions: ["empty sweep"]) {
      _ = try entry("sweep: {}")
    }
    expectFailure(.invalidValue, line: 8, keyPath: "adapters[0].sweep.rank[1]", mentions: ["at least 1"]) {
      _ = try entry("sweep: { rank: [4, 0] }")
    }
    expectFailure(.conflict, line: 8, keyPath: "adapters[0].successive_halving", mentions: ["needs a sweep"])
    {
      _ = try entry("successive_halving: { rungs: [10] }")
    }
    expectFailure(
      .invalidValue, line: 9, keyPath: "adapters[0].successive_halving.rungs[1]", mentions: ["must increase"]
    ) {
      _ = try entry("sweep: { lr: [0.1, 0.2] }\n    successive_halving: { rungs: [20, 20] }")
    }
    expectFailure(
      .invalidValue, line: 9, keyPath: "adapters[0].successive_halving", mentions: ["not below", "60 steps"]
    ) {
      _ = try entry("sweep: { lr: [0.1, 0.2] }\n    successive_halving: { rungs: [20, 60] }")
    }
    expectFailure(.invalidValue, line: 9, keyPath: "adapters[0].successive_halving.keep") {
      _ = try entry("sweep: { lr: [0.1, 0.2] }\n    successive_halving: { rungs: [20], keep: 1.0 }")
    }
    expectFailure(.conflict, line: 8, keyPath: "adapters[0].sweep.rank", mentions: ["both set and swept"]) {
      _ = try entry("sweep: { rank: [1, 2] }\n    rank: 4")
    }
    // Halving compares validation losses, so it needs validation data.
    expectFailure(
      .conflict, line: 5, keyPath: "adapters[0].successive_halving", mentions: ["validation_data"]
    ) {
      _ = try folder.load(
        "model: m\noutput: o\nadapters:\n  - { name: a, data: data/a.jsonl, sweep: { lr: [0.1, 0.2] },\n"
          + "      successive_halving: { rungs: [20] } }\n")
    }
  }

  @Test func placementConflicts() throws {
    let folder = try JobFolder()
    expectFailure(.conflict, line: 3, keyPath: "adapters[0].placement", mentions: ["contradicts group 'g'"]) {
      _ = try folder.load(
        "model: m\noutput: o\nadapters: [{ name: a, data: data/a.jsonl, group: g, placement: separate }]\n")
    }
    expectFailure(.conflict, line: 5, keyPath: "adapters[1].ranks", mentions: ["group 'g' is given 2 ranks"])
    {
      _ = try folder.load(
        """
        model: m
        output: o
        adapters:
          - { name: a, data: data/a.jsonl, group: g, ranks: 2 }
          - { name: b, data: data/b.jsonl, group: g, ranks: 4 }
        """)
    }
  }
}
