import Foundation
import LoRAComm
import LoRAKernels
import Testing

@testable import LoRAModel
@testable import LoRATraining

/// Token balancing: each rank gets about equal work, every unit is trained once, and the
/// adapter trained is the one the whole batch on one rank trains (dropout included).
@Suite struct BatchBalanceTests {
  let base = TrainerTests()

  /// Work as rows × padded length: what each rank runs, micro-batch by micro-batch.
  static let rows = SequenceCost(perToken: 1, perTrainedToken: 0, perPair: 0)

  static func units(_ lengths: [Int]) -> [BatchBalance.Unit] {
    lengths.map { BatchBalance.Unit(lengths: [$0], trained: $0 - 1) }
  }

  /// Each rank's work as its passes run (`BatchBalance.passes`: by `rows` for tokens, by
  /// `microBatch` units for sequences), each padded to its first (longest) unit.
  static func loads(
    _ assignment: [[Int]], _ units: [BatchBalance.Unit], _ balance: BatchBalance, microBatch: Int, rows: Int,
    cost: SequenceCost
  ) -> [Double] {
    assignment.map { mine in
      let shapes = mine.map {
        (
          longest: units[$0].longest, sequences: units[$0].lengths.count,
          tokens: units[$0].lengths.reduce(0, +)
        )
      }
      return balance.passes(shapes, microBatch: microBatch, rows: rows).reduce(0.0) { sum, pass in
        let batch = pass.map { units[mine[$0]] }
        return sum + cost.perPass
          + cost.of(
            sequences: batch.reduce(0) { $0 + $1.lengths.count },
            paddedTo: Batch.bucketLength(batch.map(\.longest).max()!, longest: .max),
            trained: batch.reduce(0) { $0 + $1.trained })
      }
    }
  }

  @Test func theSlowestRanksPaddedWorkIsAsSmallAsItGets() {
    // Greedily: 64 opens rank 0, 40 rank 1, the 8s join rank 1's micro-batch padded to 40 and
    // the last rank 0's (128 and 160). Moving 40 to rank 0's micro-batch (padded to 64) leaves
    // 128 and 32: the least, since 64 with any other unit costs 128 and 64 alone leaves 168.
    let units = Self.units([64, 8, 8, 8, 8, 40])
    let split = TokenSplit(units: units, rows: 4 * 64, extra: 0, cost: Self.rows)
    #expect(split.greedy(ranks: 2) == [[0, 3], [5, 1, 2, 4]])
    let assignment = BatchBalance.tokens.assign(units: units, ranks: 2, rows: 4 * 64, cost: Self.rows)
    #expect(assignment == [[0, 5], [1, 2, 3, 4]])
    #expect(
      Self.loads(assignment, units, .tokens, microBatch: 4, rows: 4 * 64, cost: Self.rows) == [128, 32])
    #expect(
      BatchBalance.sequences.assign(units: units, ranks: 2, rows: 4 * 64, cost: Self.rows) == [
        [0, 1, 2], [3, 4, 5],
      ])
    #expect(
      BatchBalance.tokens.assign(units: units, ranks: 1, rows: 4 * 64, cost: Self.rows) == [
        [0, 5, 1, 2, 3, 4]
      ])
  }

  /// Short sequences share a pass within the rows of `microBatch` longest ones; a pass never
  /// holds more, and count passes are what they were.
  @Test func shortSequencesSharePassesWithinTheRows() {
    let shapes = [40, 8, 8, 8, 8, 8, 64].map { (longest: $0, sequences: 1, tokens: $0) }
    #expect(BatchBalance.tokens.passes(shapes, microBatch: 4, rows: 4 * 64) == [0..<6, 6..<7])
    #expect(BatchBalance.sequences.passes(shapes, microBatch: 4, rows: 4 * 64) == [0..<4, 4..<7])
    // Prompt tuning's 16 rows per sequence count: 5 × (40 + 16) = 280 fit in 4 × (64 + 16) = 320, 6 (336) do not.
    #expect(BatchBalance.tokens.passes(shapes, microBatch: 4, rows: 4 * 80, extra: 16) == [0..<5, 5..<7])
    // Rows are padded to 8 but never past the run's longest: a pass of micro_batch sequences
    // of the longest (12 tokens) fits its rows.
    let twelve = [(longest: Int, sequences: Int, tokens: Int)](repeating: (12, 1, 12), count: 4)
    #expect(BatchBalance.tokens.passes(twelve, microBatch: 4, rows: 4 * 12, longest: 12) == [0..<4])
    #expect(BatchBalance.tokens.passes(twelve, microBatch: 4, rows: 4 * 12) == [0..<3, 3..<4])
    var random = SeededRandom(seed: 9)
    let sorted = (0..<64).map { _ in 1 + Int(random.next() % 96) }.sorted(by: >).map {
      (longest: $0, sequences: 2, tokens: 2 * $0)
    }
    for pass in BatchBalance.tokens.passes(sorted, microBatch: 3, rows: 2 * 3 * 96) {
      let rows = pass.count * 2 * Batch.bucketLength(sorted[pass.lowerBound].longest, longest: .max)
      #expect(rows <= 2 * 3 * 96)
    }
  }

  @Test(arguments: [1, 2, 3, 4, 8])
  func everyUnitOnceLongestFirstAndNoWorseThanCounts(ranks: Int) throws {
    let (model, _) = try LlamaModel.load(path: TrainerTests.tinyModel)
    let cost = SequenceCost(config: model.config)
    var random = SeededRandom(seed: UInt64(ranks))
    let units = Self.units((0..<48).map { _ in 8 + Int(random.next() % 500) })
    let rows = 2 * 512
    let assignment = BatchBalance.tokens.assign(units: units, ranks: ranks, rows: rows, cost: cost)
    #expect(assignment.flatMap { $0 }.sorted() == Array(units.indices))
    for mine in assignment {
      #expect(mine.map { units[$0].longest } == mine.map { units[$0].longest }.sorted(by: >))
    }
    let byTokens = Self.loads(assignment, units, .tokens, microBatch: 2, rows: rows, cost: cost).max()!
    let byCounts = Self.loads(
      BatchBalance.sequences.assign(units: units, ranks: ranks, rows: rows, cost: cost), units, .sequences,
      microBatch: 2, rows: rows, cost: cost
    ).max()!
    #expect(byTokens <= byCounts)
  }

  @Test func attentionMakesOneLongSequenceCostMoreThanTwoHalves() throws {
    let (model, _) = try LlamaModel.load(path: TrainerTests.tinyModel)
    let cost = SequenceCost(config: model.config)
    func example(_ n: Int, trained: Int) -> Example {
      Example(
        tokens: Array(repeating: 1, count: n),
        trained: Array(repeating: false, count: n - trained) + Array(repeating: true, count: trained))
    }
    #expect(cost.of(example(64, trained: 0)) > 2 * cost.of(example(32, trained: 0)))
    // The head runs on trained rows only.
    #expect(cost.of(example(32, trained: 31)) - cost.of(example(32, trained: 0)) == 31 * cost.perTrainedToken)
  }

  /// A batch of very different lengths (6 to 60 tokens) with dropout: 2 and 3 ranks, token- or
  /// count-balanced, train the adapter one rank trains, and the token split is the even one.
  @Test func tokenBalancedRanksEqualOneRankWithDropout() throws {
    let (model, _) = try LlamaModel.load(path: TrainerTests.tinyModel)
    let data = PaddingFreeTests.data(36, seed: 3)
    let one = try Self.train(model, data, ranks: 1, .sequences, microBatch: 2).parameters
    for (ranks, balance) in [(1, BatchBalance.tokens), (2, .tokens), (2, .sequences), (3, .tokens)] {
      let difference = DataParallelTests.relative(
        try Self.train(model, data, ranks: ranks, balance, microBatch: 2).parameters, one)
      #expect(difference <= 1e-5, "\(ranks) ranks by \(balance): relative difference \(difference)")
    }
  }

  /// 4 updates of r=4 LoRA or DoRA (dropout 0.2) on `ranks` thread-ranks, batch 12: rank 0's
  /// parameters and the losses.
  static func train(
    _ model: LlamaModel, _ data: [Example], ranks: Int, _ balance: BatchBalance, microBatch: Int,
    paddingFree: Bool = false, checkpoint: Bool = false, dora: Bool = false
  ) throws -> (parameters: [Float], losses: [Double]) {
    let shared = UncheckedModel(model: model)
    return try LocalCommunicator.run(ranks: ranks) { comm in
      let adapter = try LoRAAdapter(
        config: LoRAConfig(
          r: 4, loraAlpha: 8, loraDropout: 0.2, targetModules: ["q_proj", "v_proj", "down_proj"],
          useDora: dora),
        model: shared.model.config, seed: 5)
      let trainer = try Trainer(
        model: shared.model, adapter: adapter, train: data, validation: [],
        options: TrainingOptions(
          steps: 4, batchSize: 12, microBatch: microBatch, learningRate: 1e-2, seed: 7,
          checkpointActivations: checkpoint, balance: balance, paddingFree: paddingFree),
        padID: 0, communicator: comm)
      var losses: [Double] = []
      try trainer.run { if case .step(let m) = $0 { losses.append(m.loss) } }
      return (adapter.parameters.values, losses)
    }[0]
  }

  @Test func theTokenSplitOfASkewedBatchIsEven() throws {
    let (model, _) = try LlamaModel.load(path: TrainerTests.tinyModel)
    let cost = SequenceCost(config: model.config)
    // Long sequences first in the sampler's order: the count split puts them all on rank 0.
    let units = Self.units([96, 90, 88, 84, 12, 10, 9, 8])
    func spread(_ balance: BatchBalance) -> Double {
      let loads = Self.loads(
        balance.assign(units: units, ranks: 2, rows: 2 * 96, cost: cost), units, balance, microBatch: 2,
        rows: 2 * 96, cost: cost)
      return loads.max()! / (loads.reduce(0, +) / 2)
    }
    #expect(spread(.sequences) > 1.7)
    #expect(spread(.tokens) < 1.05, "\(spread(.tokens))")
  }
}

/// The per-rank phase clock: innermost phases win, an unbound clock costs nothing, and an
/// update charges every phase it runs.
@Suite struct PhaseClockTests {
  @Test func theInnermostPhaseGetsTheTime() {
    let clock = PhaseClock()
    PhaseClock.$current.withValue(clock) {
      clock.measure(.elementwise) {
        usleep(20_000)
        PhaseClock.measure(.frozen) { usleep(30_000) }
      }
    }
    let times = clock.times
    #expect(times[.frozen] >= 0.029 && times[.frozen] < 0.2, "\(times)")
    #expect(times[.elementwise] >= 0.019 && times[.elementwise] < times[.frozen], "\(times)")
    #expect(times[.lora] == 0 && times[.waiting] == 0)
    // Unbound: the body runs, nothing is charged.
    PhaseClock.measure(.lora) { usleep(1000) }
    #expect(clock.times == times)
  }

  @Test func anUpdateChargesEveryComputePhaseAndTwoRanksTheAllreduce() throws {
    let (model, _) = try LlamaModel.load(path: TrainerTests.tinyModel)
    let trainer = try TrainerTests().makeTrainer()
    let metrics = try trainer.update()
    let phases = try #require(metrics.phases)
    for phase in [Phase.frozen, .head, .loss, .lora, .attention, .elementwise, .optimizer] {
      #expect(phases[phase] > 0, "\(phase.key): \(phases)")
    }
    #expect(phases[.waiting] == 0 && phases[.allreduce] == 0)
    #expect(phases.total >= metrics.seconds)
    #expect(try trainer.group.rankPhases() == [trainer.group.clock.times])
    let shared = UncheckedModel(model: model)
    let ranks = try LocalCommunicator.run(ranks: 2) { comm in
      let adapter = try LoRAAdapter(
        config: LoRAConfig(r: 4, loraAlpha: 8, targetModules: ["q_proj"]), model: shared.model.config, seed: 1
      )
      let t = try Trainer(
        model: shared.model, adapter: adapter, train: TrainerTests().counting(8, seed: 1), validation: [],
        options: TrainingOptions(steps: 2, batchSize: 4, microBatch: 2), padID: 0, communicator: comm)
      _ = try t.update()
      return try t.group.rankPhases()
    }
    #expect(ranks[0] == ranks[1] && ranks[0].count == 2)
    #expect(ranks[0].allSatisfy { $0[.allreduce] > 0 && $0[.frozen] > 0 })
  }
}
