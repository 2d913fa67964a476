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
      let difference = DataParallelTests.relative(
        fused.trainers[k].adapter.parameters.values, adapter.parameters.values)
      #expect(difference <= 1e-5, "adapter \(k): relative difference \(difference)")
      #expect(fused.trainers[k].optimizer.step == member.options.steps)
    }
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
}
