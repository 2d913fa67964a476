import Foundation
import LoRAComm
import LoRAKernels
import Testing

@testable import LoRAModel
@testable import LoRATraining

/// Fusing must not change the math: each adapter of a fused group ends as the same adapter
/// trained alone on the same data with the same seed, to float rounding.
@Suite struct FusedTrainerTests {
  let base = TrainerTests()

  func members() -> [FusedTrainer.Member] {
    [
      .init(
        config: LoRAConfig(r: 4, loraAlpha: 8, loraDropout: 0.1, targetModules: ["all-linear"]),
        initialisationSeed: 1, train: base.counting(40, seed: 1), validation: [],
        options: TrainingOptions(steps: 6, batchSize: 8, microBatch: 4, learningRate: 1e-2, seed: 1)),
      .init(
        config: LoRAConfig(r: 2, loraAlpha: 2, targetModules: ["q_proj", "v_proj"]), initialisationSeed: 2,
        train: base.counting(30, seed: 2), validation: [],
        options: TrainingOptions(steps: 4, batchSize: 4, microBatch: 1, learningRate: 3e-3, seed: 2)),
      .init(
        config: LoRAConfig(r: 8, loraAlpha: 16, targetModules: ["down_proj"], useRslora: true),
        initialisationSeed: 3, train: base.counting(20, seed: 3), validation: [],
        options: TrainingOptions(
          steps: 5, batchSize: 6, microBatch: 3, learningRate: 5e-3, schedule: .linear, warmupSteps: 1,
          seed: 3)),
    ]
  }

  @Test func eachFusedAdapterEqualsItselfTrainedAlone() throws {
    let (model, _) = try LlamaModel.load(path: TrainerTests.tinyModel)
    let fused = try FusedTrainer(model: model, members: members(), padID: 0)
    var losses = [[Double]](repeating: [], count: 3)
    while !fused.finished {
      for (k, metrics) in try fused.update() { losses[k].append(metrics.loss) }
    }
    #expect(losses.map(\.count) == [6, 4, 5])
    for (k, member) in members().enumerated() {
      let adapter = try LoRAAdapter(
        config: member.config, model: model.config, seed: member.initialisationSeed)
      let alone = try Trainer(
        model: model, adapter: adapter, train: member.train, validation: [], options: member.options, padID: 0
      )
      var aloneLosses: [Double] = []
      try alone.run { if case .step(let m) = $0 { aloneLosses.append(m.loss) } }
      for (a, b) in zip(losses[k], aloneLosses) {
        #expect(abs(a - b) <= 1e-5 * abs(b), "adapter \(k): \(a) vs \(b)")
      }
      // Stacked and lone products add in different orders, and Adam (lr 1e-2 here) enlarges
      // the rounding in small gradient entries over 6 steps: 1.1e-5 for adapter 0 with
      // OpenBLAS's Cooperlake kernel on the Zen 4 machine, 0.85e-5 with Haswell, below 2e-7
      // for the others. A slot wired to the wrong rows or dropout mask differs by 1e-2 and more.
      let difference = DataParallelTests.relative(
        fused.trainers[k].adapter.parameters.values, adapter.parameters.values)
      #expect(difference <= 3e-5, "adapter \(k): relative difference \(difference)")
      #expect(fused.trainers[k].optimizer.step == member.options.steps)
    }
  }

  /// The members plus one of a single sequence per update (with dropout), which no number
  /// of ranks splits.
  func membersWithSingle() -> [FusedTrainer.Member] {
    members() + [
      .init(
        config: LoRAConfig(r: 4, loraAlpha: 4, loraDropout: 0.2, targetModules: ["o_proj", "up_proj"]),
        initialisationSeed: 4, train: base.counting(12, seed: 4), validation: [],
        options: TrainingOptions(steps: 7, batchSize: 1, microBatch: 1, learningRate: 4e-3, seed: 4))
    ]
  }

  /// On 2 ranks the first three members split and the single one trains whole on rank 0; on
  /// 3 ranks none splits (each trains whole on one rank), on 4 ranks one does. As members
  /// finish (after 4, 5, 6 updates) the rest are placed again, so the last moves from rank 2
  /// to rank 0 on 3 and 4 ranks. Each way the result is that of one rank, and every rank
  /// holds the same.
  @Test(arguments: [2, 3, 4]) func fusedOnSeveralRanksEqualsFusedOnOne(ranks: Int) throws {
    let (model, _) = try LlamaModel.load(path: TrainerTests.tinyModel)
    let one = try FusedTrainer(model: model, members: membersWithSingle(), padID: 0)
    while !one.finished { _ = try one.update() }
    let shared = UncheckedModel(model: model)
    let members = UncheckedSendable(membersWithSingle())
    let many = try LocalCommunicator.run(ranks: ranks) { comm in
      let fused = try FusedTrainer(model: shared.model, members: members.value, padID: 0, communicator: comm)
      let expected: [Int: [Trainer.Share]] = [
        2: [.split, .split, .split, .whole(owner: 0)],
        3: [.whole(owner: 0), .whole(owner: 2), .whole(owner: 1), .whole(owner: 2)],
        4: [.whole(owner: 0), .split, .whole(owner: 1), .whole(owner: 2)],
      ]
      #expect(fused.trainers.map(\.share) == expected[ranks])
      while !fused.finished { _ = try fused.update() }
      // The last member (7 updates) trained its last two alone, placed again on rank 0.
      #expect(fused.trainers[3].share == .whole(owner: 0))
      return fused.parameters.values
    }
    for r in 1..<ranks { #expect(many[r] == many[0]) }
    let difference = DataParallelTests.relative(many[0], one.parameters.values)
    #expect(difference <= 1e-5, "relative difference \(difference)")
  }

  @Test func sharesSplitWhatDividesAndPlaceTheRestOnTheLeastLoadedRank() {
    // (batch, micro): 8/4 and 4/1 split over 2 ranks (6 sequences each); 6/2 and 1/1 do
    // not: 6 goes to rank 0 (the lower of two equal loads), then 1 to rank 1.
    #expect(
      FusedTrainer.shares(batches: [(8, 4), (4, 1), (6, 2), (1, 1)], ranks: 2) == [
        .split, .split, .whole(owner: 0), .whole(owner: 1),
      ])
    // Four single sequences on two ranks: two each, alternating.
    #expect(
      FusedTrainer.shares(batches: Array(repeating: (1, 1), count: 4), ranks: 2) == [
        .whole(owner: 0), .whole(owner: 1), .whole(owner: 0), .whole(owner: 1),
      ])
    // One rank: everything splits (trivially).
    #expect(FusedTrainer.shares(batches: [(3, 1), (1, 1)], ranks: 1) == [.split, .split])
  }

  @Test func fusedOnTwoRanksEqualsFusedOnOne() throws {
    let (model, _) = try LlamaModel.load(path: TrainerTests.tinyModel)
    let one = try FusedTrainer(model: model, members: members(), padID: 0)
    while !one.finished { _ = try one.update() }
    let shared = UncheckedModel(model: model)
    let members = UncheckedSendable(members())
    let many = try LocalCommunicator.run(ranks: 2) { comm in
      let fused = try FusedTrainer(model: shared.model, members: members.value, padID: 0, communicator: comm)
      while !fused.finished { _ = try fused.update() }
      return fused.parameters.values
    }
    #expect(many[0] == many[1])
    let difference = DataParallelTests.relative(many[0], one.parameters.values)
    #expect(difference <= 1e-5, "relative difference \(difference)")
  }

  /// A DoRA adapter (with LoRA dropout) fused with plain LoRA ones trains as it does alone
  /// (its magnitudes in the shared buffer and all-reduce), on one rank and on two.
  @Test func doraFusedWithLoRAEqualsItselfAloneAndOnTwoRanks() throws {
    let (model, _) = try LlamaModel.load(path: TrainerTests.tinyModel)
    var members = Array(members().dropFirst())
    members.insert(
      .init(
        config: LoRAConfig(
          r: 4, loraAlpha: 8, loraDropout: 0.1, targetModules: ["all-linear"], useDora: true),
        initialisationSeed: 5, train: base.counting(40, seed: 5), validation: [],
        options: TrainingOptions(steps: 5, batchSize: 8, microBatch: 4, learningRate: 1e-2, seed: 5)),
      at: 1)
    let fused = try FusedTrainer(model: model, members: members, padID: 0)
    while !fused.finished { _ = try fused.update() }
    let member = members[1]
    let adapter = try LoRAAdapter(config: member.config, model: model.config, seed: member.initialisationSeed)
    let alone = try Trainer(
      model: model, adapter: adapter, train: member.train, validation: [], options: member.options, padID: 0)
    try alone.run { _ in }
    let trained = fused.trainers[1].adapter
    #expect(
      trained.modules.allSatisfy { m in m.magnitude != nil && m.gradMagnitude!.values.contains { $0 != 0 } })
    let difference = DataParallelTests.relative(trained.parameters.values, adapter.parameters.values)
    #expect(difference <= 3e-5, "DoRA fused vs alone: relative difference \(difference)")
    let shared = UncheckedModel(model: model)
    let given = UncheckedSendable(members)
    let many = try LocalCommunicator.run(ranks: 2) { comm in
      let group = try FusedTrainer(model: shared.model, members: given.value, padID: 0, communicator: comm)
      while !group.finished { _ = try group.update() }
      return group.parameters.values
    }
    #expect(many[0] == many[1])
    let ranks = DataParallelTests.relative(many[0], fused.parameters.values)
    #expect(ranks <= 1e-5, "2 ranks vs 1: relative difference \(ranks)")
  }
}
