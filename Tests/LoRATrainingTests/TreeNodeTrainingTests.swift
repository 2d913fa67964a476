import Foundation
import LoRACheckpoint
import LoRAComm
import LoRAKernels
import Testing

@testable import LoRAModel
@testable import LoRATraining

/// A node of an adapter tree trains over its ancestors' ΔW, attached (as the job runner does)
/// after the trainer was built: SFT and DPO alike equal training over a base with the parent
/// merged into its weights. With DPO (an SFT parent, a DPO child) the reference is where the
/// node starts, the base and its ancestors.
@Suite struct TreeNodeTrainingTests {
  /// A parent adapter with a random nonzero B (a trained one, as far as the model can tell).
  static func parent(_ model: LlamaModel) throws -> LoRAAdapter {
    let parent = try LoRAAdapter(
      config: LoRAConfig(r: 4, loraAlpha: 8, targetModules: ["q_proj", "v_proj", "up_proj"]),
      model: model.config, seed: 9)
    var random = SeededRandom(seed: 109)
    for m in parent.modules { for j in 0..<m.b.count { m.b[j] = (random.nextUnitFloat() - 0.5) * 0.4 } }
    return parent
  }

  /// `model` with `adapter` merged into private copies of its weights.
  static func merged(_ model: LlamaModel, _ adapter: LoRAAdapter) -> LlamaModel {
    let weights = LlamaWeights(copying: model.weights, writable: Set(LoRATarget.allCases))
    for m in adapter.modules {
      LowRank.merge(into: weights.layers[m.layer].matrix(m.target).f32!, a: m.a, b: m.b, scale: m.scale)
    }
    return LlamaModel(config: model.config, weights: weights)
  }

  /// 4 DPO updates (validation after the 2nd and 4th) over `model`, with `frozen` under the
  /// adapter: step losses, validation losses, parameters.
  static func train(_ model: LlamaModel, frozen: LoRAAdapter?, paddingFree: Bool) throws -> (
    losses: [Double], validation: [Double], parameters: [Float]
  ) {
    let adapter = try LoRAAdapter(config: PaddingFreeDPOTests.config, model: model.config, seed: 5)
    let trainer = try Trainer(
      model: model, adapter: adapter, train: PaddingFreeDPOTests.pairs(24, seed: 1),
      validation: PaddingFreeDPOTests.pairs(6, seed: 2),
      options: TrainingOptions(
        steps: 4, batchSize: 6, microBatch: 3, learningRate: 2e-2, schedule: .constant, seed: 3,
        evaluateEvery: 2, dpo: DPOLoss(beta: 0.5), paddingFree: paddingFree),
      padID: 0)
    trainer.group.trainers[0].frozen = frozen
    var (losses, validation) = ([Double](), [Double]())
    try trainer.run { event in
      switch event {
      case .step(let m): losses.append(m.loss)
      case .validation(_, let loss, _): validation.append(loss)
      case .checkpoint, .reference: break
      }
    }
    return (losses, validation, adapter.parameters.values)
  }

  /// Every sequence 16 tokens and one micro-batch an update: each pass has the shape of the
  /// stack the trainer builds first, before the chain is attached (those buffers once served
  /// the node without its ancestors).
  @Test func anSFTNodeEqualsSFTOverItsMergedParentInEveryPass() throws {
    let (model, _) = try LlamaModel.load(path: TrainerTests.tinyModel)
    let parent = try Self.parent(model)
    var random = SeededRandom(seed: 12)
    let data = (0..<16).map { _ in
      let start = Int(random.next() % 80)
      return Example(
        tokens: (0..<16).map { Int32(start + $0) }, trained: [false] + Array(repeating: true, count: 15))
    }
    func train(_ model: LlamaModel, frozen: LoRAAdapter?) throws -> (losses: [Double], parameters: [Float]) {
      let adapter = try LoRAAdapter(config: PaddingFreeDPOTests.config, model: model.config, seed: 5)
      let trainer = try Trainer(
        model: model, adapter: adapter, train: data, validation: [],
        options: TrainingOptions(steps: 3, batchSize: 4, microBatch: 4, learningRate: 1e-2, seed: 3), padID: 0
      )
      trainer.group.trainers[0].frozen = frozen
      var losses: [Double] = []
      try trainer.run { if case .step(let m) = $0 { losses.append(m.loss) } }
      return (losses, adapter.parameters.values)
    }
    let node = try train(model, frozen: try AdapterChain.flatten([parent], model: model.config))
    let merged = try train(Self.merged(model, parent), frozen: nil)
    for (a, b) in zip(node.losses, merged.losses) { #expect(abs(a - b) <= 1e-5 * abs(b), "\(a) vs \(b)") }
    let difference = DataParallelTests.relative(node.parameters, merged.parameters)
    #expect(difference <= 1e-4, "relative difference \(difference)")
  }

  @Test(arguments: [true, false]) func aDPONodeEqualsDPOOverItsMergedParent(paddingFree: Bool) throws {
    let (model, _) = try LlamaModel.load(path: TrainerTests.tinyModel)
    let parent = try Self.parent(model)
    let node = try Self.train(
      model, frozen: try AdapterChain.flatten([parent], model: model.config), paddingFree: paddingFree)
    let merged = try Self.train(Self.merged(model, parent), frozen: nil, paddingFree: paddingFree)
    // The first update's policy is its reference: the node starts where its parent ended.
    #expect(abs(node.losses[0] - log(2)) < 1e-6, "\(node.losses[0])")
    #expect(node.losses.count == 4 && node.validation.count >= 2)
    for (a, b) in zip(node.losses, merged.losses) { #expect(abs(a - b) <= 1e-5 * abs(b), "\(a) vs \(b)") }
    for (a, b) in zip(node.validation, merged.validation) {
      #expect(abs(a - b) <= 1e-5 * abs(b), "validation \(a) vs \(b)")
    }
    let difference = DataParallelTests.relative(node.parameters, merged.parameters)
    #expect(difference <= 1e-4, "relative difference \(difference)")
  }
}
