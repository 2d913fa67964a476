import Foundation
import LoRAComm
import LoRAKernels
import Testing

@testable import LoRAModel
@testable import LoRATraining

/// Padding-free DPO: chosen and rejected responses of different lengths packed into shared
/// rows (and the reference pass over the same rows) train exactly what one sequence a row
/// trains, on 1 and 2 ranks, alone and fused with SFT adapters.
@Suite struct PaddingFreeDPOTests {
  /// `count` pairs (chosen, rejected, …): an untrained prompt of 2–9 tokens (one pair in five
  /// 30–37), a chosen response counting on and a rejected one repeating a token, 2–7 each.
  static func pairs(_ count: Int, seed: UInt64) -> [Example] {
    var random = SeededRandom(seed: seed)
    return (0..<count).flatMap { i -> [Example] in
      let start = Int(random.next() % 90)
      let promptLength = (i % 5 == 0 ? 30 : 2) + Int(random.next() % 8)
      let prompt = (0..<promptLength).map { Int32((start + $0) % 96) }
      let (chosen, rejected) = (2 + Int(random.next() % 6), 2 + Int(random.next() % 6))
      func example(_ response: [Int32]) -> Example {
        Example(
          tokens: prompt + response,
          trained: [Bool](repeating: false, count: promptLength)
            + [Bool](repeating: true, count: response.count))
      }
      return [
        example((0..<chosen).map { Int32((start + promptLength + $0) % 96) }),
        example([Int32](repeating: 90, count: rejected)),
      ]
    }
  }

  static func options(paddingFree: Bool, balance: BatchBalance = .tokens) -> TrainingOptions {
    TrainingOptions(
      steps: 4, batchSize: 6, microBatch: 3, learningRate: 2e-2, schedule: .constant, seed: 3,
      dpo: DPOLoss(beta: 0.5, labelSmoothing: 0.05), balance: balance, paddingFree: paddingFree)
  }

  static let config = LoRAConfig(
    r: 4, loraAlpha: 8, loraDropout: 0.2, targetModules: ["q_proj", "v_proj", "down_proj"])

  /// 4 updates on `ranks` thread-ranks: rank 0's parameters, losses and reward accuracies.
  static func train(_ model: LlamaModel, ranks: Int, _ options: TrainingOptions) throws -> (
    parameters: [Float], losses: [Double], accuracies: [Double]
  ) {
    let shared = UncheckedModel(model: model)
    return try LocalCommunicator.run(ranks: ranks) { comm in
      let adapter = try LoRAAdapter(config: Self.config, model: shared.model.config, seed: 5)
      let trainer = try Trainer(
        model: shared.model, adapter: adapter, train: Self.pairs(24, seed: 1), validation: [],
        options: options, padID: 0, communicator: comm)
      #expect(trainer.group.trainers[0].packs == options.paddingFree)
      var (losses, accuracies) = ([Double](), [Double]())
      try trainer.run {
        if case .step(let m) = $0 {
          losses.append(m.loss)
          accuracies.append(m.preference!.accuracy)
        }
      }
      return (adapter.parameters.values, losses, accuracies)
    }[0]
  }

  @Test func paddingFreeDPOEqualsPaddedDPO() throws {
    let (model, _) = try LlamaModel.load(path: TrainerTests.tinyModel)
    let padded = try Self.train(model, ranks: 1, Self.options(paddingFree: false))
    #expect(padded.losses.last! < padded.losses.first!)
    for (ranks, balance) in [(1, BatchBalance.tokens), (2, .tokens), (2, .sequences)] {
      let free = try Self.train(model, ranks: ranks, Self.options(paddingFree: true, balance: balance))
      let difference = DataParallelTests.relative(free.parameters, padded.parameters)
      #expect(difference <= 1e-5, "\(ranks) ranks by \(balance): relative difference \(difference)")
      for (a, b) in zip(free.losses, padded.losses) { #expect(abs(a - b) <= 1e-5 * b, "\(a) vs \(b)") }
      for (a, b) in zip(free.accuracies, padded.accuracies) { #expect(abs(a - b) <= 1e-9) }
    }
  }

  /// A packed pass of several pairs holds no more tokens than `micro_batch` padded pairs of
  /// the longest (both responses counted), and never splits a pair.
  @Test func aPackedPassOfPairsStaysWithinItsRows() throws {
    let (model, _) = try LlamaModel.load(path: TrainerTests.tinyModel)
    var options = Self.options(paddingFree: true)
    (options.batchSize, options.microBatch) = (24, 1)
    let adapter = try LoRAAdapter(config: Self.config, model: model.config, seed: 5)
    let trainer = try Trainer(
      model: model, adapter: adapter, train: Self.pairs(24, seed: 1), validation: [], options: options,
      padID: 0)
    let state = trainer.group.trainers[0]
    let passes = state.microBatches(try state.currentSlice())
    #expect(passes.count > 1 && passes.count < 24, "\(passes.count) passes")
    for pass in passes {
      #expect(
        pass.count % 2 == 0
          && stride(from: 0, to: pass.count, by: 2).allSatisfy {
            pass[$0].position % 2 == 0 && pass[$0 + 1].position == pass[$0].position + 1
          })
      let tokens = pass.reduce(0) { $0 + $1.example.tokens.count }
      // One pair alone may round up past the padded rows (to a multiple of 8).
      #expect(
        pass.count == 2 || Batch.bucketLength(tokens, longest: .max) <= state.passRows, "\(tokens) tokens")
    }
  }

  /// Held-out pairs score padding-free too: the loss and metrics of padded scoring, with an
  /// adapter (policy ≠ reference) and without.
  @Test func paddingFreePreferenceScoringEqualsPadded() throws {
    let (model, _) = try LlamaModel.load(path: TrainerTests.tinyModel)
    let adapter = try LoRAAdapter(config: Self.config, model: model.config, seed: 3)
    for i in adapter.parameters.values.indices { adapter.parameters[i] = Float(i % 7) * 0.01 - 0.03 }
    let examples = Self.pairs(11, seed: 4)
    for scored in [adapter, nil] {
      let free = Evaluator(model: model, adapter: scored, microBatch: 4, padID: 0)
      let padded = Evaluator(model: model, adapter: scored, microBatch: 4, padID: 0)
      padded.paddingFree = false
      let loss = DPOLoss(beta: 0.5)
      let (a, b) = (
        free.preferenceSums(of: examples, loss: loss), padded.preferenceSums(of: examples, loss: loss)
      )
      #expect(a.pairs == 11 && b.pairs == 11)
      #expect(abs(a.loss - b.loss) <= 1e-6 * b.loss, "\(a.loss) vs \(b.loss)")
      for (x, y) in zip(a.metrics, b.metrics) { #expect(abs(x - y) <= 1e-5 * max(abs(y), 1), "\(x) vs \(y)") }
      if scored != nil { #expect(abs(b.loss - 11 * log(2)) > 1e-3, "the adapter changes the policy") }
    }
  }

  /// DPO packed beside a padded SFT member, and DPO padded beside a packed SFT member (the
  /// stacked batch then has spans around the DPO rows too): each ends as itself alone, padded.
  @Test(arguments: [true, false]) func paddingFreeDPOFusedWithSFTEqualsEachAlone(dpoPacks: Bool) throws {
    let (model, _) = try LlamaModel.load(path: TrainerTests.tinyModel)
    let members: [FusedTrainer.Member] = [
      .init(
        config: LoRAConfig(r: 4, loraAlpha: 8, loraDropout: 0.1, targetModules: ["q_proj", "v_proj"]),
        initialisationSeed: 1, train: PaddingFreeTests.data(24, seed: 1), validation: [],
        options: TrainingOptions(
          steps: 4, batchSize: 4, microBatch: 2, learningRate: 1e-2, seed: 1, paddingFree: !dpoPacks)),
      .init(
        config: Self.config, initialisationSeed: 5, train: Self.pairs(24, seed: 1), validation: [],
        options: Self.options(paddingFree: dpoPacks)),
    ]
    let fused = try FusedTrainer(model: model, members: members, padID: 0)
    var losses = [[Double]](repeating: [], count: members.count)
    while !fused.finished { for (k, metrics) in try fused.update() { losses[k].append(metrics.loss) } }
    for (k, member) in members.enumerated() {
      var options = member.options
      options.paddingFree = false
      let adapter = try LoRAAdapter(
        config: member.config, model: model.config, seed: member.initialisationSeed)
      var alone: [Double] = []
      try Trainer(
        model: model, adapter: adapter, train: member.train, validation: [], options: options, padID: 0
      )
      .run { if case .step(let m) = $0 { alone.append(m.loss) } }
      #expect(losses[k].count == alone.count)
      for (a, b) in zip(losses[k], alone) {
        #expect(abs(a - b) <= 1e-5 * abs(b), "member \(k): \(a) vs \(b)")
      }
      let difference = DataParallelTests.relative(
        fused.trainers[k].adapter.parameters.values, adapter.parameters.values)
      #expect(difference <= 3e-5, "member \(k): relative difference \(difference)")
    }
  }
}
