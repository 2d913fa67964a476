import Foundation
import LoRAModel
import LoRATraining
import Testing

@testable import LoRACoordinator

/// A temporary folder with a job file and the data files it names.
final class JobFolder {
  let path: String

  init(data: [String] = ["a.jsonl", "b.jsonl", "c.jsonl", "valid.jsonl"]) throws {
    path = NSTemporaryDirectory() + "coordinator-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path + "/data", withIntermediateDirectories: true)
    for name in data {
      try write(
        "data/" + name,
        (1...10).map { #"{"prompt": "What is \#($0) plus \#($0)?", "completion": " \#(2 * $0)"}"# }
          .joined(separator: "\n") + "\n")
    }
    try write("model.gguf", "not a real model; the job file checks only that it exists")
  }

  deinit { try? FileManager.default.removeItem(atPath: path) }

  func write(_ name: String, _ text: String) throws {
    try text.write(toFile: path + "/" + name, atomically: true, encoding: .utf8)
  }

  /// Writes `jobs.yaml` and loads it.
  func load(_ yaml: String) throws -> JobFile {
    try write("jobs.yaml", yaml)
    return try JobFile.load(path: path + "/jobs.yaml")
  }
}

/// The failure `body` throws, checked for kind, line, key path and words of the message.
func expectFailure(
  _ kind: JobFileError.Kind, line: Int?, keyPath: String?, mentions words: [String] = [],
  sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void
) {
  do {
    try body()
    Issue.record("expected a \(kind) error, got none", sourceLocation: sourceLocation)
  } catch let error as JobFileError {
    #expect(error.kind == kind, "\(error)", sourceLocation: sourceLocation)
    #expect(error.line == line, "\(error)", sourceLocation: sourceLocation)
    #expect(error.keyPath == keyPath, "\(error)", sourceLocation: sourceLocation)
    #expect(
      error.description.hasPrefix(error.file + (line.map { ":\($0)" } ?? "") + ": "),
      sourceLocation: sourceLocation)
    for word in words {
      #expect(error.description.contains(word), "'\(word)' not in: \(error)", sourceLocation: sourceLocation)
    }
  } catch {
    Issue.record("expected a JobFileError, got \(error)", sourceLocation: sourceLocation)
  }
}

@Suite struct JobFileTests {
  static let demo = """
    model: model.gguf
    output: out/demo
    placement: auto
    defaults: { steps: 60, batch_size: 8, micro_batch: 4, lr: 2.0e-4, targets: [q_proj, v_proj], rank: 8, alpha: 16 }
    adapters:
      - name: devil
        data: data/a.jsonl
        validation_data: data/valid.jsonl
        format: prompt_completion
        rank: 16
        lr: 3.0e-4
        placement: fused
        group: g1
        ranks: 2
        priority: 1
        output: out/demo/devil
      - name: fortunes
        data: data/b.jsonl
        group: g1
      - name: arith
        data: data/c.jsonl
        validation_fraction: 0.1
        sweep: { rank: [2, 8, 32], lr: [1.0e-4, 3.0e-4] }
        successive_halving: { rungs: [20, 40], keep: 0.5 }
        init_adapter: out/grown
        chat_format: zephyr

    """

  @Test func demoResolvesDefaultsGroupsSweepsAndPaths() throws {
    let folder = try JobFolder()
    let job = try folder.load(Self.demo)
    let root = URL(fileURLWithPath: folder.path).standardizedFileURL.path
    #expect(job.model == root + "/model.gguf")
    #expect(
      job.adapters.map(\.name) == [
        "devil", "fortunes", "arith-r2-lr0.0001", "arith-r2-lr0.0003", "arith-r8-lr0.0001",
        "arith-r8-lr0.0003",
        "arith-r32-lr0.0001", "arith-r32-lr0.0003",
      ])
    #expect(job.adapters.map(\.order) == Array(0..<8))
    let devil = job.adapters[0]
    #expect(devil.settings.rank == 16 && devil.settings.lr == 3e-4 && devil.settings.steps == 60)
    #expect(devil.settings.targets == ["q_proj", "v_proj"] && devil.settings.alpha == 16)
    #expect(devil.data == root + "/data/a.jsonl")
    #expect(devil.settings.validationData == root + "/data/valid.jsonl")
    #expect(devil.output == root + "/out/demo/devil")
    #expect(devil.group == "g1" && devil.placement == .fused && devil.ranks == 2 && devil.priority == 1)
    let fortunes = job.adapters[1]
    #expect(fortunes.settings.rank == 8 && fortunes.output == root + "/out/demo/fortunes")
    #expect(fortunes.group == "g1" && fortunes.placement == .fused && fortunes.priority == 0)
    #expect(devil.settings.initAdapter == nil && devil.settings.chatFormat == nil)
    let arith = job.adapters[2]
    #expect(arith.settings.initAdapter == root + "/out/grown" && arith.settings.chatFormat == "zephyr")
    let member = job.adapters[5]
    #expect(member.settings.rank == 8 && member.settings.lr == 3e-4 && member.settings.steps == 60)
    #expect(member.group == "arith" && member.placement == .fused)
    #expect(member.output == root + "/out/demo/arith-r8-lr0.0003")
    #expect(member.sweep?.sweep == "arith" && member.sweep?.index == 3 && member.sweep?.count == 6)
    #expect(member.sweep?.values == [["rank", "8"], ["lr", "0.0003"]])
    #expect(member.sweep?.successiveHalving == SuccessiveHalving(rungs: [20, 40], keep: 0.5))
    #expect(job.groups.map(\.name) == ["g1", "arith"])
    #expect(job.groups[1].adapters.count == 6)
    // Where values came from: the sweep's value, the defaults, the entry.
    #expect(member.origin(of: "lr").keyPath == "adapters[2].sweep.lr[1]")
    #expect(member.origin(of: "steps").keyPath == "defaults.steps" && member.origin(of: "steps").line == 4)
    #expect(devil.origin.line == 6)
    // g1 asks for 2 ranks and the sweep needs one more.
    expectFailure(.tooFewRanks, line: 20, keyPath: "adapters[2]", mentions: ["only 0 rank(s) left"]) {
      try job.validate(ranks: 2)
    }
    try job.validate(ranks: 3)
  }

  @Test func tildeIsExpandedAndAbsolutePathsKept() throws {
    let folder = try JobFolder()
    let job = try folder.load(
      """
      model: ~/some/model.gguf
      adapters:
        - { name: a, data: \(folder.path)/data/a.jsonl, output: ~/out/a }
      """)
    let home = NSHomeDirectory()
    #expect(job.model == URL(fileURLWithPath: home + "/some/model.gguf").standardizedFileURL.path)
    #expect(job.adapters[0].output == URL(fileURLWithPath: home + "/out/a").standardizedFileURL.path)
    #expect(job.adapters[0].data.hasSuffix("/data/a.jsonl") && job.adapters[0].data.hasPrefix("/"))
  }

  @Test func adapterSettingsEncodeFlatWithTrainKeysAndTokensPerBatch() throws {
    let folder = try JobFolder()
    let job = try folder.load(Self.demo)
    let settings = job.adapters[0].settings
    #expect(settings.training.rank == 16 && settings.training.batchSize == 8)
    #expect(
      settings.training.validationData == settings.validationData && settings.output == job.adapters[0].output
    )
    let object = try #require(
      try JSONSerialization.jsonObject(with: JSONEncoder().encode(settings)) as? [String: Any])
    #expect(object["rank"] as? Int == 16 && object["batch_size"] as? Int == 8)
    #expect(Set(object.keys).isSubset(of: Set(AdapterSettings.keys)), "\(object.keys)")
    #expect(try JSONDecoder().decode(AdapterSettings.self, from: JSONEncoder().encode(settings)) == settings)
    #expect(AdapterSettings.keys.count == Set(AdapterSettings.keys).count)
    #expect(
      AdapterSettings.keys.firstIndex(of: "tokens_per_batch")
        == AdapterSettings.keys.firstIndex(of: "micro_batch").map { $0 + 1 })
  }

  @Test func tokensPerBatchReplacesAnInheritedBatchSize() throws {
    let folder = try JobFolder()
    let job = try folder.load(
      """
      model: model.gguf
      output: out
      defaults: { batch_size: 16 }
      adapters:
        - { name: a, data: data/a.jsonl, tokens_per_batch: 4096 }
        - { name: b, data: data/b.jsonl }
      """)
    #expect(job.adapters[0].settings.tokensPerBatch == 4096 && job.adapters[0].settings.batchSize == nil)
    #expect(job.adapters[0].batchSize == nil)
    #expect(job.adapters[1].settings.batchSize == 16)
  }

  @Test func rankAutoAndAnInheritedRankReplaceEachOther() throws {
    let folder = try JobFolder()
    let job = try folder.load(
      """
      model: model.gguf
      output: out
      defaults: { rank: 4, validation_fraction: 0.1 }
      adapters:
        - { name: a, data: data/a.jsonl, rank: auto }
        - { name: b, data: data/b.jsonl, rank_ladder: [1, 2] }
        - { name: c, data: data/b.jsonl }
      """)
    let (a, b, c) = (job.adapters[0].settings, job.adapters[1].settings, job.adapters[2].settings)
    #expect(a.training.$rank && a.rank == nil && a.ladder == TrainingSettings.Defaults.rankLadder)
    #expect(b.rank == nil && b.ladder == [1, 2])
    #expect(c.rank == 4 && c.ladder == nil)
    // Written back (the unit's training_config.json) as it was read.
    let encoded = String(decoding: try JSONEncoder().encode(a), as: UTF8.self)
    #expect(encoded.contains(#""rank":"auto""#))
    #expect(try JSONDecoder().decode(AdapterSettings.self, from: Data(encoded.utf8)) == a)
  }

  @Test func aTreeRunsLevelByLevel() throws {
    let folder = try JobFolder()
    let job = try folder.load(
      """
      model: model.gguf
      output: out
      adapters:
        - { name: general, data: data/a.jsonl }
        - { name: narrow, data: data/b.jsonl, parent: general }
        - { name: narrower, data: data/c.jsonl, parent: narrow, sweep: { lr: [0.1, 0.2] } }
        - { name: other, data: data/c.jsonl }
      """)
    #expect(
      job.levels.map { $0.map(\.name) } == [
        ["general", "other"], ["narrow"], ["narrower-lr0.1", "narrower-lr0.2"],
      ])
    #expect(job.ancestors(of: job.adapter(named: "narrower-lr0.2")!).map(\.name) == ["general", "narrow"])
    #expect(job.ancestors(of: job.adapter(named: "general")!).isEmpty)
    try job.validate(ranks: 1)
  }

  @Test func badTreesAreRefusedNamingTheAdapters() throws {
    let folder = try JobFolder()
    expectFailure(
      .invalidValue, line: 3, keyPath: "adapters[0].parent", mentions: ["no adapter 'gone'", "a, b"]
    ) {
      _ = try folder.load(
        "model: m\noutput: o\nadapters: [{ name: a, data: data/a.jsonl, parent: gone }, { name: b, data: data/b.jsonl }]\n"
      )
    }
    expectFailure(.invalidValue, line: 3, keyPath: "adapters[0].parent", mentions: ["names itself"]) {
      _ = try folder.load("model: m\noutput: o\nadapters: [{ name: a, data: data/a.jsonl, parent: a }]\n")
    }
    expectFailure(.conflict, line: 5, keyPath: "adapters[0].parent", mentions: ["cycle", "a → c → b → a"]) {
      _ = try folder.load(
        """
        model: m
        output: o
        adapters:
          - name: a
            parent: c
            data: data/a.jsonl
          - { name: b, data: data/b.jsonl, parent: a }
          - { name: c, data: data/c.jsonl, parent: b }
        """)
    }
    expectFailure(
      .invalidValue, line: 5, keyPath: "adapters[1].parent", mentions: ["'s' is a sweep", "s-lr0.1"]
    ) {
      _ = try folder.load(
        """
        model: m
        output: o
        adapters:
          - { name: s, data: data/a.jsonl, sweep: { lr: [0.1, 0.2] } }
          - { name: b, data: data/b.jsonl, parent: s }
        """)
    }
    expectFailure(
      .conflict, line: 5, keyPath: "adapters[1].group", mentions: ["mixes levels", "'a' and 'b'"]
    ) {
      _ = try folder.load(
        """
        model: m
        output: o
        adapters:
          - { name: a, data: data/a.jsonl, group: g }
          - { name: b, data: data/b.jsonl, group: g, parent: a }
        """)
    }
  }
}
