import Foundation
import LoRAModel
import Testing

@testable import LoRACoordinator

/// Plans for a few (ranks, adapters) combinations under a constant cost model: 1 ms per
/// token on one rank, every data file 10 examples of 100 tokens, batch 8, so an update is
/// 800 tokens = 0.8 s on one rank.
@Suite struct PlannerTests {
  static let cost = CostModel { _, _ in 0.001 }

  func plan(_ adapters: String, ranks: Int, cost: CostModel = cost, defaults: String = "{ steps: 10 }") throws
    -> (JobFile, Plan)
  {
    let folder = try JobFolder()
    let job = try folder.load("model: model.gguf\noutput: out\ndefaults: \(defaults)\nadapters:\n" + adapters)
    try job.validate(ranks: ranks)
    let data = Dictionary(
      uniqueKeysWithValues: Set(job.adapters.map(\.data)).map {
        ($0, DataEstimate(examples: 10, sampleTokens: Array(repeating: 100, count: 10)))
      })
    return (job, try Planner.plan(job.adapters, ranks: ranks, cost: cost, data: data))
  }

  func close(_ a: Double, _ b: Double) -> Bool { abs(a - b) < 1e-9 }

  @Test func enoughRanksGiveSeparateGroups() throws {
    let (_, plan) = try plan(
      "  - { name: a, data: data/a.jsonl }\n  - { name: b, data: data/b.jsonl }\n", ranks: 4)
    #expect(plan.groups.map(\.ranks) == [0..<2, 2..<4])
    #expect(plan.groups.map { $0.runs.map(\.adapters) } == [[["a"]], [["b"]]])
    #expect(plan.groups.allSatisfy { $0.runs[0].placement == .separate && !$0.runs[0].queued })
    // 10 updates × 800 tokens × 1 ms / 2 ranks.
    #expect(close(plan.estimatedSeconds, 4))
    #expect(plan.adapter(named: "b")?.tokens == 8000 && plan.adapter(named: "b")?.rankCount == 2)
    #expect(plan.group(ofRank: 3)?.index == 1 && plan.idleRanks.isEmpty)
  }

  @Test func fewerRanksThanAdaptersQueueOnFreeGroups() throws {
    // a takes 5 updates (4 s), b 10 (8 s); c waits for the first free group: a's.
    let (_, plan) = try plan(
      "  - { name: a, data: data/a.jsonl, steps: 5 }\n  - { name: b, data: data/b.jsonl }\n"
        + "  - { name: c, data: data/c.jsonl }\n", ranks: 2)
    #expect(plan.groups.map(\.ranks) == [0..<1, 1..<2])
    #expect(plan.groups.map { $0.runs.map(\.adapters) } == [[["a"], ["c"]], [["b"]]])
    let c = try #require(plan.adapter(named: "c"))
    #expect(close(c.start, 4) && close(c.end, 12) && c.placement == .shared)
    #expect(plan.groups[0].runs.allSatisfy { $0.queued })
    #expect(close(plan.estimatedSeconds, 12))
    #expect(plan.queue == ["a", "b", "c"])
    // At run time both groups claim from the queue; the runs above are the estimate.
    #expect(plan.queuedUnits.map(\.adapters) == [["a"], ["b"], ["c"]])
    #expect(plan.queuedUnits.allSatisfy { $0.groups == [0, 1] })
  }

  @Test func priorityOrdersTheQueue() throws {
    let (_, plan) = try plan(
      "  - { name: a, data: data/a.jsonl }\n  - { name: b, data: data/b.jsonl, steps: 5 }\n"
        + "  - { name: c, data: data/c.jsonl, priority: 2 }\n", ranks: 2)
    #expect(plan.queue == ["c", "a", "b"])
    // c and a start; b takes the group that frees first (a tie at 8 s: the lower index).
    #expect(plan.groups.map { $0.runs.flatMap(\.adapters) } == [["c", "b"], ["a"]])
    #expect(close(plan.adapter(named: "b")!.start, 8))
  }

  @Test func oneRankRunsEverythingInQueueOrder() throws {
    let (_, plan) = try plan(
      "  - { name: a, data: data/a.jsonl }\n  - { name: b, data: data/b.jsonl, priority: 1 }\n", ranks: 1)
    #expect(plan.groups.count == 1 && plan.groups[0].runs.map(\.adapters) == [["b"], ["a"]])
    #expect(close(plan.adapter(named: "a")!.start, 8) && close(plan.estimatedSeconds, 16))
  }

  @Test func groupSizeFitsTheBatch() throws {
    // 3 ranks for one adapter: batch 8 = 2 micro-batches of 4, so 2 ranks train and 1 idles.
    let (_, plan) = try plan("  - { name: a, data: data/a.jsonl }\n", ranks: 3)
    #expect(plan.groups.map(\.ranks) == [0..<2] && plan.idleRanks == [2])
    #expect(plan.group(ofRank: 2) == nil)
    // Asking for 3 ranks explicitly is an error naming the key.
    expectFailure(
      .invalidValue, line: 5, keyPath: "adapters[0].ranks", mentions: ["not a multiple", "3 ranks"]
    ) {
      _ = try self.plan("  - { name: a, data: data/a.jsonl, ranks: 3 }\n", ranks: 3)
    }
  }

  @Test func fusedGroupOfSingleSequencesSpreadsOverItsRanks() throws {
    // Four adapters of one sequence per update, fused: none splits over 2 ranks, but each
    // trains whole on one, so the group keeps both ranks (two adapters each). One update of
    // one adapter (100 tokens) costs 1 s here.
    let oneSecondPerUpdate = CostModel(evaluationShare: 0) { _, _ in 0.01 }
    let single = (0..<4).map {
      "  - { name: a\($0), data: data/a.jsonl, group: g, batch_size: 1, micro_batch: 1 }\n"
    }
    let (_, spread) = try plan(single.joined(), ranks: 2, cost: oneSecondPerUpdate)
    #expect(spread.groups.map(\.ranks) == [0..<2] && spread.idleRanks.isEmpty)
    // Each rank trains two of them: an update takes two adapters' time; with three, the
    // busier rank still has two.
    #expect(spread.adapters.map(\.groupRank) == [0, 1, 0, 1])
    let steps = Double(spread.adapter(named: "a0")!.steps)
    #expect(close(spread.adapter(named: "a0")!.end, 2 * steps))
    let (_, three) = try plan(single.dropLast().joined(), ranks: 2, cost: oneSecondPerUpdate)
    #expect(close(three.adapter(named: "a0")!.end, 2 * steps))
    // When one finishes the others are placed again: a0 and a2 (20 updates) start together
    // on rank 0 beside a1 (10 updates) on rank 1, then take a rank each: 10 × 2 s + 10 × 1 s.
    let uneven = [(0, 20), (1, 10), (2, 20)].map { i, steps in
      "  - { name: a\(i), data: data/a.jsonl, group: g, batch_size: 1, micro_batch: 1, steps: \(steps) }\n"
    }
    let (_, moved) = try plan(uneven.joined(), ranks: 2, cost: oneSecondPerUpdate)
    #expect(moved.adapters.map(\.groupRank) == [0, 1, 0])
    #expect(close(moved.adapter(named: "a1")!.end, 20) && close(moved.adapter(named: "a0")!.end, 30))
    // Three ranks for two such adapters would leave one idle: asked for, it is an error.
    let two = (0..<2).map {
      "  - { name: b\($0), data: data/a.jsonl, group: h, batch_size: 1, micro_batch: 1, ranks: 3 }\n"
    }
    expectFailure(
      .invalidValue, line: 5, keyPath: "adapters[0].ranks", mentions: ["cannot keep 3 ranks busy"]
    ) {
      _ = try self.plan(two.joined(), ranks: 3)
    }
    // Not asked for, the group shrinks to the 2 ranks it keeps busy.
    let (_, shrunk) = try plan(
      two.map { $0.replacingOccurrences(of: ", ranks: 3", with: "") }.joined(), ranks: 3)
    #expect(shrunk.groups.map(\.ranks) == [0..<2] && shrunk.idleRanks == [2])
  }

  @Test func fusedGroupsAndSweepsWithSuccessiveHalving() throws {
    let adapters = """
        - { name: a, data: data/a.jsonl, group: g }
        - { name: b, data: data/b.jsonl, group: g, steps: 5 }
        - name: s
          data: data/c.jsonl
          validation_fraction: 0.1
          eval_every: 0
          sweep: { lr: [1.0e-4, 2.0e-4, 3.0e-4, 4.0e-4] }
          successive_halving: { rungs: [4], keep: 0.5 }

      """
    expectFailure(.tooFewRanks, line: 7, keyPath: "adapters[2]", mentions: ["needs 2 groups"]) {
      _ = try self.plan(adapters, ranks: 1)
    }
    let validationFree = CostModel(evaluationShare: 0) { _, _ in 0.001 }
    let (_, plan) = try plan(adapters, ranks: 2, cost: validationFree)
    #expect(
      plan.groups.map { $0.runs.map(\.adapters) } == [
        [["a", "b"]], [["s-lr0.0001", "s-lr0.0002", "s-lr0.0003", "s-lr0.0004"]],
      ])
    #expect(plan.groups.map { $0.runs[0].placement } == [.fused, .fused])
    #expect(plan.groups.map { $0.runs[0].fusedGroup } == ["g", "s"])
    // g: 5 updates of both (2 × 0.8 s), then 5 of a alone.
    #expect(close(plan.adapter(named: "b")!.end, 8) && close(plan.adapter(named: "a")!.end, 12))
    // s: 4 updates of 4 members, then 6 of the 2 that survive the rung.
    #expect(plan.adapters.filter { $0.name.hasPrefix("s-") }.map(\.plannedSteps) == [10, 10, 4, 4])
    let halved: Double = 4 * 4 * 0.8 + 6 * 2 * 0.8
    #expect(close(plan.groups[1].estimatedSeconds, halved))
    let tokens: Double = 800 * (10 + 10 + 4 + 4)
    #expect(plan.groups[1].runs[0].tokens == tokens)
    // A fused efficiency of 2 halves the fused groups' times.
    let faster = CostModel(fusedEfficiency: 2, evaluationShare: 0) { _, _ in 0.001 }
    let (_, fast) = try self.plan(adapters, ranks: 2, cost: faster)
    #expect(close(fast.estimatedSeconds, plan.estimatedSeconds / 2))
  }

  @Test func sharedAdaptersTakeTurnsOnOneGroup() throws {
    let (_, plan) = try plan(
      "  - { name: a, data: data/a.jsonl, placement: shared }\n  - { name: b, data: data/b.jsonl, placement: shared }\n"
        + "  - { name: c, data: data/c.jsonl, placement: separate, ranks: 2 }\n", ranks: 4)
    #expect(plan.groups.map(\.ranks) == [0..<2, 2..<4])
    #expect(
      plan.groups[0].runs.map(\.adapters) == [["a"], ["b"]] && plan.groups[0].runs[0].placement == .shared)
    #expect(plan.groups[1].runs.map(\.adapters) == [["c"]] && plan.groups[1].runs[0].placement == .separate)
    #expect(close(plan.adapter(named: "b")!.start, 4) && close(plan.estimatedSeconds, 8))
  }

  @Test func queueOverTheGroupsThereAre() throws {
    // Two separate adapters take both ranks; the auto one waits for the first to finish.
    let (_, plan) = try plan(
      "  - { name: a, data: data/a.jsonl, placement: separate, steps: 20 }\n"
        + "  - { name: b, data: data/b.jsonl, placement: separate }\n  - { name: c, data: data/c.jsonl }\n",
      ranks: 2)
    #expect(plan.groups.map { $0.runs.flatMap(\.adapters) } == [["a"], ["b", "c"]])
    #expect(close(plan.adapter(named: "c")!.start, 8) && plan.adapter(named: "c")!.placement == .shared)
    #expect(plan.queuedUnits.map(\.adapters) == [["c"]] && plan.queuedUnits[0].groups == [0, 1])
    #expect(plan.groups.map { $0.runs.map(\.queued) } == [[false], [false, true]])
  }

  @Test func plansAreDeterministic() throws {
    let adapters = (0..<5).map { "  - { name: x\($0), data: data/a.jsonl, steps: \(3 + $0 % 3) }\n" }.joined()
    let first = try plan(adapters, ranks: 3).1
    let second = try plan(adapters, ranks: 3).1
    #expect(first == second)
    #expect(first.groups.count == 3 && first.groups.flatMap(\.runs).count == 5)
  }

  @Test func epochsSetStepsFromTheData() throws {
    // 10 examples, batch 2, 3 epochs: 15 updates.
    let (_, plan) = try plan(
      "  - { name: a, data: data/a.jsonl, epochs: 3, batch_size: 2, micro_batch: 1 }\n", ranks: 1,
      defaults: "{}")
    #expect(plan.adapters[0].steps == 15)
  }

  @Test func flopCostModel() {
    // D 8, F 16, L 2, H 2 of 4, KVH 1, V 10: linear 2 × (8 × 24 + 3 × 8 × 16) + 80 = 1232;
    // attention 12 × 2 × 10 × 8; LoRA r 2 on q (8→8) and v (8→4): 6 × 2 × (16 + 12) per layer.
    let c = LlamaConfig(
      architecture: "llama", hiddenSize: 8, intermediateSize: 16, layers: 2, heads: 2, kvHeads: 1,
      vocabularySize: 10)
    let lora = LoRAConfig(r: 2)
    let plain: Double = 4 * 1232 + 1920 + 2 * 336
    #expect(CostModel.flopsPerToken(c, lora: lora, length: 10) == plain)
    let patterned = LoRAConfig(r: 2, rankPattern: ["v_proj": 4])
    let withPattern: Double = 4 * 1232 + 1920 + 2 * (192 + 288)
    #expect(CostModel.flopsPerToken(c, lora: patterned, length: 10) == withPattern)
    let model = CostModel(model: c, gflopsPerRank: 1)
    #expect(model.gflopsPerRank == 1)
  }

  @Test func dataEstimateFromJSONLines() throws {
    let folder = try JobFolder(data: [])
    try folder.write(
      "d.jsonl",
      #"{"prompt": "12345678", "completion": "1234"}"# + "\n" + #"{"input_ids": [1, 2, 3]}"# + "\n\n"
        + #"{"messages": [{"role": "user", "content": "1234"}]}"# + "\n")
    let estimate = try DataEstimate.measure(path: folder.path + "/d.jsonl")
    #expect(estimate.examples == 3)
    #expect(estimate.sampleTokens == [1 + 2 + 1, 3, 5 + 1])
    #expect(estimate.meanTokens(maxSeqLen: 3) == 3)
  }
}
