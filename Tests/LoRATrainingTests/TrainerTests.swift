import Foundation
import LoRAKernels
import Testing

@testable import LoRAModel
@testable import LoRATraining

/// Training end to end on the tiny model: a counting task (each token is the previous + 1,
/// modulo the vocabulary) that the random base cannot do and a LoRA adapter learns.
@Suite struct TrainerTests {
  static let tinyModel = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("../LoRAModelTests/Fixtures/tiny-tied").standardized.path

  func counting(_ count: Int, seed: UInt64) -> [Example] {
    var random = SeededRandom(seed: seed)
    return (0..<count).map { _ in
      let start = Int(random.next() % 96)
      let length = 8 + Int(random.next() % 9)
      let tokens = (0..<length).map { Int32((start + $0) % 96) }
      return Example(tokens: tokens, trained: [false] + Array(repeating: true, count: length - 1))
    }
  }

  func makeTrainer(
    seed: UInt64 = 1, dropout: Double = 0, loraPlusRatio: Double = 1, useDora: Bool = false,
    initialization: String = "default"
  ) throws -> Trainer {
    let (model, _) = try LlamaModel.load(path: Self.tinyModel)
    let adapter = try LoRAAdapter(
      config: LoRAConfig(
        r: 8, loraAlpha: 16, loraDropout: dropout, targetModules: ["all-linear"],
        initialization: initialization,
        useDora: useDora),
      model: model.config, seed: seed)
    return try Trainer(
      model: model, adapter: adapter, train: counting(64, seed: 1), validation: counting(16, seed: 2),
      options: TrainingOptions(
        steps: 60, batchSize: 8, microBatch: 4, learningRate: 1e-2, schedule: .cosine, warmupSteps: 5,
        seed: seed,
        evaluateEvery: 20, loraPlusRatio: loraPlusRatio),
      padID: 0)
  }

  @Test func lossFallsAndOnlyTheAdapterChanges() throws {
    let trainer = try makeTrainer()
    let baseBefore = trainer.model.weights.layers.map { $0.q.values + $0.down.values }
    let (before, _) = try trainer.validationLoss()
    var validations: [Double] = []
    var steps: [StepMetrics] = []
    try trainer.run { event in
      switch event {
      case .step(let metrics): steps.append(metrics)
      case .validation(_, let loss, _): validations.append(loss)
      case .checkpoint: Issue.record("no checkpoints were asked for")
      case .reference: Issue.record("next-token training has no reference")
      }
    }
    #expect(steps.count == 60 && validations.count == 3)
    #expect(validations.last! < before * 0.5, "validation loss \(before) → \(validations)")
    #expect(steps.last!.loss < steps.first!.loss * 0.5)
    #expect(trainer.model.weights.layers.map { $0.q.values + $0.down.values } == baseBefore)
    #expect(steps.allSatisfy { $0.trainedTokens > 0 && $0.tokensPerSecond > 0 })
    #expect(steps[0].learningRate == 0 && abs(steps[5].learningRate - 1e-2) < 1e-12)  // warmup
  }

  /// LoRA+: from B = 0, one update moves every B by exactly `ratio` times what plain LoRA
  /// moves it, and every A the same; the option reaches AdamW through `TrainingOptions`.
  @Test func loraPlusScalesOnlyBsLearningRate() throws {
    func oneUpdate(ratio: Double) throws -> LoRAAdapter {
      let (model, _) = try LlamaModel.load(path: Self.tinyModel)
      let adapter = try LoRAAdapter(
        config: LoRAConfig(r: 4, loraAlpha: 8, targetModules: ["all-linear"]), model: model.config, seed: 3)
      let trainer = try Trainer(
        model: model, adapter: adapter, train: counting(8, seed: 1), validation: [],
        options: TrainingOptions(
          steps: 1, batchSize: 8, microBatch: 4, learningRate: 1e-3, schedule: .constant, loraPlusRatio: ratio
        ),
        padID: 0)
      _ = try trainer.update()
      return adapter
    }
    let plain = try oneUpdate(ratio: 1)
    let plus = try oneUpdate(ratio: 16)
    for (p, q) in zip(plain.modules, plus.modules) {
      #expect(p.a.values == q.a.values, "\(p.name): A moves as in plain LoRA")
      let moved = p.b.values.map { abs($0) }.max() ?? 0
      #expect(moved > 0)
      let worst = zip(p.b.values, q.b.values).map { abs(16 * $0 - $1) }.max() ?? 0
      #expect(worst <= 1e-5 * 16 * moved, "\(p.name): B moves 16 times as far (off by \(worst))")
    }
  }

  @Test func evaluationNeverAppliesDropout() throws {
    // The same weights with and without lora_dropout score the same: dropout is for training only.
    let (model, _) = try LlamaModel.load(path: Self.tinyModel)
    let with = try LoRAAdapter(
      config: LoRAConfig(r: 4, loraAlpha: 8, loraDropout: 0.3), model: model.config, seed: 2)
    let without = try LoRAAdapter(config: LoRAConfig(r: 4, loraAlpha: 8), model: model.config, seed: 2)
    for i in 0..<with.parameterCount { with.parameters[i] = Float(i % 13) * 0.01 - 0.06 }
    without.parameters.copy(from: with.parameters)
    let examples = counting(6, seed: 4)
    let a = Evaluator(model: model, adapter: with, microBatch: 3, padID: 0).meanLoss(of: examples)
    let b = Evaluator(model: model, adapter: without, microBatch: 3, padID: 0).meanLoss(of: examples)
    #expect(a.loss == b.loss)
  }

  @Test func sameSeedSameAdapterBitForBit() throws {
    let first = try makeTrainer(seed: 3, dropout: 0.1)
    try first.run(until: 12) { _ in }
    let second = try makeTrainer(seed: 3, dropout: 0.1)
    try second.run(until: 12) { _ in }
    #expect(first.adapter.parameters.values == second.adapter.parameters.values)
    let other = try makeTrainer(seed: 4, dropout: 0.1)
    try other.run(until: 12) { _ in }
    #expect(other.adapter.parameters.values != first.adapter.parameters.values)
  }

  @Test func gradientAccumulationEqualsOneBigBatch() throws {
    // 8 sequences as 2 micro-batches of 4 or 1 of 8: the same update up to float rounding.
    let split = try makeTrainer()
    let (model, _) = try LlamaModel.load(path: Self.tinyModel)
    let whole = try Trainer(
      model: model,
      adapter: try LoRAAdapter(config: split.adapter.config, model: model.config, seed: 1),
      train: counting(64, seed: 1), validation: [],
      options: TrainingOptions(
        steps: 60, batchSize: 8, microBatch: 8, learningRate: 1e-2, schedule: .cosine, warmupSteps: 5, seed: 1
      ),
      padID: 0)
    for _ in 0..<3 {
      _ = try split.update()
      _ = try whole.update()
    }
    let difference = zip(split.adapter.parameters.values, whole.adapter.parameters.values).map {
      abs($0 - $1)
    }.max()!
    #expect(difference < 1e-5)
  }

  @Test func schedulesFollowHuggingFace() {
    let cosine = LearningRateSchedule(kind: .cosine, peak: 1, warmupSteps: 10, totalSteps: 110)
    #expect(cosine.rate(step: 0) == 0 && cosine.rate(step: 5) == 0.5 && cosine.rate(step: 10) == 1)
    #expect(abs(cosine.rate(step: 60) - 0.5) < 1e-12 && cosine.rate(step: 110) < 1e-12)
    let linear = LearningRateSchedule(kind: .linear, peak: 2, warmupSteps: 0, totalSteps: 4)
    #expect([0, 1, 2, 3].map { linear.rate(step: $0) } == [2, 1.5, 1, 0.5])
    #expect(LearningRateSchedule(kind: .constant, peak: 3, warmupSteps: 0, totalSteps: 9).rate(step: 8) == 3)
  }

  @Test func badOptionsAreNamed() throws {
    func message(_ options: TrainingOptions) -> String {
      do {
        try options.validate()
        return "accepted"
      } catch { return "\(error)" }
    }
    #expect(message(TrainingOptions(learningRate: -1)) == "learning rate must be a positive number, got -1.0")
    #expect(
      message(TrainingOptions(learningRate: .nan)) == "learning rate must be a positive number, got nan")
    #expect(
      message(TrainingOptions(batchSize: 6, microBatch: 4))
        == "batch size 6 must be a multiple of micro-batch 4 × 1 rank(s)")
    #expect(message(TrainingOptions(steps: 0)) == "steps must be at least 1, got 0")
    #expect(
      message(TrainingOptions(adamW: .init(weightDecay: -0.1))) == "weight decay must be 0 or more, got -0.1")
  }

  @Test func clippingScalesToTheMaximumNorm() {
    let g = Tensor(shape: [2], values: [3, 4])
    #expect(AdamW.clipGradientNorm(g, maxNorm: 1) == 5)
    #expect(abs(g[0] - 0.6) < 1e-5 && abs(g[1] - 0.8) < 1e-5)
  }
}
