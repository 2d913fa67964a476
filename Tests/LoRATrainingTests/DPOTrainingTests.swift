import Foundation
import LoRACheckpoint
import LoRAComm
import LoRAKernels
import Testing

@testable import LoRAModel
@testable import LoRATraining

/// DPO through the training loop on the tiny model: pairs whose chosen response continues
/// the count (each token the previous + 1) and whose rejected one repeats token 90. The
/// reward accuracy on held-out pairs rises, 2 thread-ranks equal 1 (pairs never split), and
/// micro-batches add up to the whole batch.
@Suite struct DPOTrainingTests {
  /// `count` pairs as chosen, rejected, chosen, …; the prompt (4 tokens) untrained.
  /// (`trainer` passes the reference in every update unless `precompute`:
  /// DPOPrecomputedReferenceTests.)
  static func pairs(_ count: Int, seed: UInt64) -> [Example] {
    var random = SeededRandom(seed: seed)
    return (0..<count).flatMap { _ -> [Example] in
      let start = Int(random.next() % 90)
      let prompt = (0..<4).map { Int32((start + $0) % 96) }
      let chosen = (4..<8).map { Int32((start + $0) % 96) }
      let rejected = [Int32](repeating: 90, count: 4)
      let trained = [Bool](repeating: false, count: 4) + [Bool](repeating: true, count: 4)
      return [
        Example(tokens: prompt + chosen, trained: trained),
        Example(tokens: prompt + rejected, trained: trained),
      ]
    }
  }

  static func trainer(
    _ model: LlamaModel, communicator: any Communicator = LocalCommunicator.single(), microBatch: Int = 2,
    steps: Int = 12, beta: Double = 0.5, precompute: Bool? = false, pairs count: Int = 24
  ) throws -> Trainer {
    let adapter = try LoRAAdapter(
      config: LoRAConfig(r: 4, loraAlpha: 8, targetModules: ["q_proj", "v_proj", "down_proj"]),
      model: model.config, seed: 5)
    return try Trainer(
      model: model, adapter: adapter, train: pairs(count, seed: 1), validation: pairs(8, seed: 2),
      options: TrainingOptions(
        steps: steps, batchSize: 4, microBatch: microBatch, learningRate: 2e-2, schedule: .constant, seed: 3,
        evaluateEvery: steps, dpo: DPOLoss(beta: beta, labelSmoothing: 0.05), precomputeReference: precompute),
      padID: 0, communicator: communicator)
  }

  /// An SFT adapter, a DPO adapter (member 1: `dpoSteps` updates of 4 of 24 pairs) and
  /// another SFT adapter, for a fused group.
  static func fusedMembers(dpoSteps: Int, precompute: Bool? = nil) -> [FusedTrainer.Member] {
    let sft = TrainerTests()
    return [
      .init(
        config: LoRAConfig(r: 4, loraAlpha: 8, targetModules: ["q_proj", "v_proj"]), initialisationSeed: 1,
        train: sft.counting(24, seed: 1), validation: [],
        options: TrainingOptions(steps: 5, batchSize: 4, microBatch: 2, learningRate: 1e-2, seed: 1)),
      .init(
        config: LoRAConfig(r: 4, loraAlpha: 8, targetModules: ["q_proj", "v_proj", "down_proj"]),
        initialisationSeed: 5, train: pairs(24, seed: 1), validation: [],
        options: TrainingOptions(
          steps: dpoSteps, batchSize: 4, microBatch: 2, learningRate: 2e-2, schedule: .constant, seed: 3,
          dpo: DPOLoss(beta: 0.5, labelSmoothing: 0.05), precomputeReference: precompute)),
      .init(
        config: LoRAConfig(r: 2, loraAlpha: 4, targetModules: ["down_proj"]), initialisationSeed: 2,
        train: sft.counting(16, seed: 2), validation: [],
        options: TrainingOptions(steps: 4, batchSize: 2, microBatch: 1, learningRate: 5e-3, seed: 2)),
    ]
  }

  static func run(_ t: Trainer) throws -> (steps: [StepMetrics], validation: [Double]) {
    var steps: [StepMetrics] = []
    var validation: [Double] = []
    try t.run { event in
      switch event {
      case .step(let m): steps.append(m)
      case .validation(_, let loss, _): validation.append(loss)
      case .checkpoint, .reference: break
      }
    }
    return (steps, validation)
  }

  @Test func heldOutRewardAccuracyRisesAndTheLossFalls() throws {
    let (model, _) = try LlamaModel.load(path: TrainerTests.tinyModel)
    let t = try Self.trainer(model)
    let dpo = try #require(t.options.dpo)
    let before = try t.state.preferenceValidation(dpo)
    #expect(abs(before.loss.loss - log(2)) < 1e-6, "B = 0: the policy is the reference")
    let (steps, validation) = try Self.run(t)
    let after = try t.state.preferenceValidation(dpo)
    #expect(steps.count == 12 && steps.allSatisfy { $0.preference != nil && $0.trainedTokens == 4 })
    #expect(steps.last!.loss < steps.first!.loss)
    // The first update's policy is its reference (B = 0): a reference pass gone wrong shows here.
    #expect(abs(steps[0].loss - log(2)) < 1e-6 && steps[0].preference!.margin == 0)
    #expect(validation.count == 1 && abs(validation[0] - after.loss.loss) < 1e-9)
    #expect(after.loss.loss < before.loss.loss)
    // 0 before (every reward 0), 6 of 8 held-out pairs after 12 updates on 24 pairs.
    #expect(after.metrics.accuracy >= 0.75 && after.metrics.margin > 1, "\(after.metrics)")
    #expect(after.loss.tokens == 8)
  }

  @Test func twoRanksEqualOneAndMicroBatchesAddUp() throws {
    let (model, _) = try LlamaModel.load(path: TrainerTests.tinyModel)
    let one = try Self.trainer(model)
    let oneRun = try Self.run(one)
    let whole = try Self.trainer(model, microBatch: 4)
    let wholeRun = try Self.run(whole)
    let shared = UncheckedModel(model: model)
    let two = try LocalCommunicator.run(ranks: 2) { comm in
      let t = try Self.trainer(shared.model, communicator: comm, microBatch: 1)
      let run = try Self.run(t)
      return (run.steps.map(\.loss), run.steps.map { $0.preference!.accuracy }, t.adapter.parameters.values)
    }
    #expect(two[0].2 == two[1].2, "every rank ends with the same adapter")
    for other in [(two[0].0, two[0].2), (wholeRun.steps.map(\.loss), whole.adapter.parameters.values)] {
      for (a, b) in zip(other.0, oneRun.steps.map(\.loss)) {
        #expect(abs(a - b) <= 1e-5 * abs(b), "\(a) vs \(b)")
      }
      #expect(DataParallelTests.relative(other.1, one.adapter.parameters.values) <= 1e-4)
    }
    #expect(two[0].1 == oneRun.steps.map { $0.preference!.accuracy })
  }

  /// A DPO adapter fused with SFT adapters (one stacked pass of the base; the DPO slot's
  /// reference pass apart) ends as each trained alone, on one rank and on two.
  @Test(arguments: [1, 2]) func dpoFusedWithSFTEqualsEachAlone(ranks: Int) throws {
    let (model, _) = try LlamaModel.load(path: TrainerTests.tinyModel)
    let members = Self.fusedMembers(dpoSteps: 6)
    let shared = UncheckedModel(model: model)
    let fused = try LocalCommunicator.run(ranks: ranks) { comm in
      let group = try FusedTrainer(model: shared.model, members: members, padID: 0, communicator: comm)
      var losses = [[Double]](repeating: [], count: members.count)
      while !group.finished {
        for (k, metrics) in try group.update() { losses[k].append(metrics.loss) }
      }
      return (losses, group.trainers.map { $0.adapter.parameters.values })
    }[0]
    for (k, member) in members.enumerated() {
      let adapter = try LoRAAdapter(
        config: member.config, model: model.config, seed: member.initialisationSeed)
      let alone = try Trainer(
        model: model, adapter: adapter, train: member.train, validation: [], options: member.options, padID: 0
      )
      var losses: [Double] = []
      try alone.run { if case .step(let m) = $0 { losses.append(m.loss) } }
      #expect(fused.0[k].count == member.options.steps)
      for (a, b) in zip(fused.0[k], losses) {
        #expect(abs(a - b) <= 1e-5 * abs(b), "adapter \(k): \(a) vs \(b)")
      }
      let difference = DataParallelTests.relative(fused.1[k], adapter.parameters.values)
      #expect(difference <= 3e-5, "adapter \(k): relative difference \(difference)")
    }
  }

  /// A DPO checkpoint resumes exactly, and not as SFT or with another β.
  @Test func dpoCheckpointsResumeExactlyAndRecordTheObjective() throws {
    let (model, _) = try LlamaModel.load(path: TrainerTests.tinyModel)
    let resume = ResumeTests()
    let dir = try resume.folder()
    defer { try? FileManager.default.removeItem(at: dir) }
    let whole = try Self.trainer(model, steps: 4)
    _ = try Self.run(whole)
    let first = try Self.trainer(model, steps: 4)
    var path = ""
    try first.run(until: 2, checkpoints: resume.checkpointing(first, dir, every: 2, fullEvery: 1)) {
      if case .checkpoint(let saved) = $0 { path = saved.path }
    }
    let reader = try CheckpointReader(path: path)
    #expect(reader.header.optimizer?.objective == "dpo" && reader.header.optimizer?.beta == 0.5)
    #expect {
      try Self.trainer(model, steps: 4, beta: 0.2).resume(from: reader, fingerprint: "sha256:tiny")
    } throws: { "\($0)".contains("DPO beta 0.5 in the checkpoint, 0.2 now") }
    let sft = try resume.base.makeTrainer(seed: 3)
    #expect {
      try sft.resume(from: reader, fingerprint: "sha256:tiny")
    } throws: { "\($0)".contains("objective dpo in the checkpoint, sft now") }
    let again = try Self.trainer(model, steps: 4)
    try again.resume(from: reader, fingerprint: "sha256:tiny")
    _ = try Self.run(again)
    #expect(again.adapter.parameters.values == whole.adapter.parameters.values)
  }
}
