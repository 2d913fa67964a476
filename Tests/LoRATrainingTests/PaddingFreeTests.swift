import Foundation
import LoRAComm
import LoRAKernels
import Testing

@testable import LoRAModel
@testable import LoRATraining

/// Padding-free passes (`padding_free`): sequences packed into shared rows train exactly
/// what one sequence a row trains — positions restart, attention and dropout stay within
/// each sequence — on fewer rows.
@Suite struct PaddingFreeTests {
  /// Lengths 6 to 60 (one long in six), every position but the first trained.
  static func data(_ count: Int, seed: UInt64) -> [Example] {
    var random = SeededRandom(seed: seed)
    return (0..<count).map { i in
      let length = i % 6 == 0 ? 44 + Int(random.next() % 17) : 6 + Int(random.next() % 7)
      let start = Int(random.next() % 96)
      return Example(
        tokens: (0..<length).map { Int32((start + $0) % 96) },
        trained: [false] + Array(repeating: true, count: length - 1))
    }
  }

  @Test func firstFitPacksEverySequenceOnceWithinTheRows() {
    let lengths = [60, 30, 25, 12, 10, 8, 8, 5, 3]
    let rows = Batch.pack(lengths: lengths, rowLength: 64)
    #expect(rows.flatMap { $0 }.sorted() == Array(lengths.indices))
    #expect(rows.allSatisfy { $0.reduce(0) { $0 + lengths[$1] } <= 64 })
    #expect(rows == [[0, 8], [1, 2, 5], [3, 4, 6, 7]])
    let examples = lengths.map { n in
      Example(tokens: (0..<n).map { Int32($0 + 1) }, trained: Array(repeating: true, count: n))
    }
    let batch = Batch(rows: rows.map { $0.map { examples[$0] } }, length: 64, padID: 0)
    #expect(batch.batch == 3 && batch.tokens.count == 3 * 64)
    // Spans tile each row: its sequences, then its padding in spans of at most 8.
    #expect(
      batch.spans?.map { [$0.row, $0.start, $0.count] } == [
        [0, 0, 60], [0, 60, 3], [0, 63, 1], [1, 0, 30], [1, 30, 25], [1, 55, 8], [1, 63, 1], [2, 0, 12],
        [2, 12, 10], [2, 22, 8], [2, 30, 5], [2, 35, 8], [2, 43, 8], [2, 51, 8], [2, 59, 5],
      ])
    // Targets stop at each sequence's end: as many as one a row gives.
    let alone = Batch(examples: examples, length: 64, padID: 0)
    #expect(batch.trainedCount == alone.trainedCount)
    #expect(batch.spanExamples == [0, 1, -1, 2, 3, 4, -1, 5, 6, 7, 8, -1, -1, -1, -1])
    #expect(
      batch.targets[59] == -1 && batch.targets[60] == 2 && batch.targets[62] == -1 && batch.targets[63] == -1)
    // A padding-free pass takes sequences while their tokens (to a multiple of 8) fit the
    // budget of 2 rows of 64: 60 + 30 + 25 + 12 = 127, then the other five; one a row: 2, 4 and 3.
    let shapes = lengths.map { (longest: $0, sequences: 1, tokens: $0) }
    #expect(BatchBalance.tokens.passes(shapes, microBatch: 2, rows: 2 * 64, packed: true) == [0..<4, 4..<9])
    #expect(BatchBalance.tokens.passes(shapes, microBatch: 2, rows: 2 * 64) == [0..<2, 2..<6, 6..<9])
  }

  /// A padding-free member alone is one row of its tokens; beside a member of one sequence a
  /// row, its sequences are packed into rows of the longest when that makes fewer rows.
  @Test func aStackedPassTakesTheLayoutOfFewerRows() {
    func placed(_ lengths: [Int]) -> [AdapterState.Placed] {
      lengths.enumerated().map { i, n in
        (i, i, Example(tokens: Array(repeating: 1, count: n), trained: Array(repeating: true, count: n)))
      }
    }
    let alone = FusedTrainer.layout([placed([60, 30, 25, 5])], packs: [true], longest: 64)
    #expect(alone.length == 120 && alone.rows.map { $0.map(\.count) } == [[4]])
    // Joined: 2 rows of 120 (240); packed: [60], [30, 25, 5] and [50]: 3 rows of 64 (192).
    let mixed = FusedTrainer.layout(
      [placed([60, 30, 25, 5]), placed([50])], packs: [true, false], longest: 64)
    #expect(mixed.length == 64 && mixed.rows.map { $0.map(\.count) } == [[1, 3], [1]])
    let short = FusedTrainer.layout([placed([8, 8, 8]), placed([30])], packs: [true, false], longest: 64)
    #expect(short.length == 32 && short.rows.map { $0.map(\.count) } == [[3], [1]])
    let none = FusedTrainer.layout([placed([60, 30])], packs: [false], longest: 64)
    #expect(none.length == 64 && none.rows.map { $0.map(\.count) } == [[1, 1]])
  }

  /// One packed pass against each sequence alone: the summed loss and every gradient, with
  /// dropout; the same packed tokens without spans (one sequence a row) differ.
  @Test func aPackedPassEqualsEachSequenceAlone() throws {
    let (model, _) = try LlamaModel.load(path: TrainerTests.tinyModel)
    let examples = Self.data(6, seed: 4)
    let length = Batch.bucketLength(examples.map(\.tokens.count).max()!, longest: .max)
    let rows = Batch.pack(lengths: examples.map(\.tokens.count), rowLength: length)
    #expect(rows.count < examples.count)
    let config = LoRAConfig(r: 4, loraAlpha: 8, loraDropout: 0.3, targetModules: ["all-linear"])
    let adapter = try LoRAAdapter(config: config, model: model.config, seed: 3)
    for i in adapter.parameters.values.indices { adapter.parameters[i] = Float(i % 7) * 0.01 - 0.03 }
    func pass(_ batch: Batch, numbers: [Int], spans: Bool) -> (loss: Double, gradients: [Float]) {
      adapter.gradients.zero()
      let a = LlamaActivations(
        config: model.config, batch: batch.batch, length: batch.length, keepForBackward: true,
        adapter: adapter)
      a.dropoutSeed = 11
      a.spans = spans ? batch.spans : nil
      a.sequenceNumbers = numbers
      let g = LlamaGradients(config: model.config, batch: batch.batch, length: batch.length, maxRank: 4)
      model.forward(tokens: batch.tokens, activations: a)
      let loss = model.backward(targets: batch.targets, activations: a, gradients: g, gradientScale: 1)
        .lossSum
      return (loss, adapter.gradients.values)
    }
    let packedBatch = Batch(rows: rows.map { $0.map { examples[$0] } }, length: length, padID: 0)
    let order = rows.flatMap { $0 }
    let numbers = packedBatch.spanExamples.map { $0 < 0 ? -1 : order[$0] }
    let packed = pass(packedBatch, numbers: numbers, spans: true)
    var loss = 0.0
    var gradients = [Float](repeating: 0, count: adapter.gradients.count)
    for (i, example) in examples.enumerated() {
      let alone = pass(Batch(examples: [example], length: nil, padID: 0), numbers: [i], spans: false)
      loss += alone.loss
      gradients = zip(gradients, alone.gradients).map(+)
    }
    #expect(abs(packed.loss - loss) <= 1e-5 * loss)
    let difference = DataParallelTests.relative(packed.gradients, gradients)
    #expect(difference <= 1e-5, "relative difference \(difference)")
    // Rows read as one sequence each (positions running on, attention across): not the same.
    let unpacked = pass(packedBatch, numbers: Array(0..<packedBatch.batch), spans: false)
    #expect(abs(unpacked.loss - loss) > 1e-3 * loss)
  }

  /// Training with and without padding-free passes, on 1 and 2 ranks and by either balance,
  /// with dropout, with activation checkpointing, and with DoRA: the same adapter, step by step.
  @Test func paddingFreeTrainingEqualsPaddedTraining() throws {
    let (model, _) = try LlamaModel.load(path: TrainerTests.tinyModel)
    let data = Self.data(36, seed: 3)
    func train(ranks: Int, _ balance: BatchBalance, paddingFree: Bool) throws -> (
      parameters: [Float], losses: [Double]
    ) {
      try BatchBalanceTests.train(model, data, ranks: ranks, balance, microBatch: 3, paddingFree: paddingFree)
    }
    let padded = try train(ranks: 1, .tokens, paddingFree: false)
    for (ranks, balance) in [(1, BatchBalance.tokens), (2, .tokens), (2, .sequences)] {
      let free = try train(ranks: ranks, balance, paddingFree: true)
      let difference = DataParallelTests.relative(free.parameters, padded.parameters)
      #expect(difference <= 1e-5, "\(ranks) ranks by \(balance): relative difference \(difference)")
      for (a, b) in zip(free.losses, padded.losses) { #expect(abs(a - b) <= 1e-5 * b) }
    }
    // Activation checkpointing reruns each layer over the same spans; DoRA's dropout form too.
    let checkpointed = try BatchBalanceTests.train(
      model, data, ranks: 1, .tokens, microBatch: 3, paddingFree: true, checkpoint: true)
    #expect(DataParallelTests.relative(checkpointed.parameters, padded.parameters) <= 1e-5)
    let doraPadded = try BatchBalanceTests.train(model, data, ranks: 1, .tokens, microBatch: 3, dora: true)
    let dora = try BatchBalanceTests.train(
      model, data, ranks: 2, .tokens, microBatch: 3, paddingFree: true, dora: true)
    let difference = DataParallelTests.relative(dora.parameters, doraPadded.parameters)
    #expect(difference <= 1e-5, "DoRA: relative difference \(difference)")
  }

  /// A fused group whose first member is padding-free (dropout) and second is not: each ends
  /// as itself trained alone without packing.
  @Test func aPaddingFreeMemberOfAFusedGroupEqualsItselfAlone() throws {
    let (model, _) = try LlamaModel.load(path: TrainerTests.tinyModel)
    let members: [FusedTrainer.Member] = [
      .init(
        config: LoRAConfig(r: 4, loraAlpha: 8, loraDropout: 0.1, targetModules: ["all-linear"]),
        initialisationSeed: 1, train: Self.data(30, seed: 1), validation: [],
        options: TrainingOptions(
          steps: 3, batchSize: 8, microBatch: 4, learningRate: 1e-2, seed: 1, paddingFree: true)),
      .init(
        config: LoRAConfig(r: 2, loraAlpha: 2, targetModules: ["q_proj", "v_proj"]), initialisationSeed: 2,
        train: Self.data(20, seed: 2), validation: [],
        options: TrainingOptions(steps: 3, batchSize: 4, microBatch: 2, learningRate: 3e-3, seed: 2)),
    ]
    let fused = try FusedTrainer(model: model, members: members, padID: 0)
    while !fused.finished { _ = try fused.update() }
    for (k, member) in members.enumerated() {
      var options = member.options
      options.paddingFree = false
      let adapter = try LoRAAdapter(
        config: member.config, model: model.config, seed: member.initialisationSeed)
      try Trainer(
        model: model, adapter: adapter, train: member.train, validation: [], options: options, padID: 0
      ).run { _ in }
      let difference = DataParallelTests.relative(
        fused.trainers[k].adapter.parameters.values, adapter.parameters.values)
      #expect(difference <= 3e-5, "member \(k): relative difference \(difference)")
    }
  }

  /// Validation scores padding-free passes too: the same mean loss as padded ones.
  @Test func paddingFreeScoringEqualsPaddedScoring() throws {
    let (model, _) = try LlamaModel.load(path: TrainerTests.tinyModel)
    let adapter = try LoRAAdapter(
      config: LoRAConfig(r: 4, loraAlpha: 8, targetModules: ["all-linear"]), model: model.config, seed: 3)
    for i in adapter.parameters.values.indices { adapter.parameters[i] = Float(i % 5) * 0.01 - 0.02 }
    let examples = Self.data(23, seed: 8)
    let free = Evaluator(model: model, adapter: adapter, microBatch: 3, padID: 0)
    let padded = Evaluator(model: model, adapter: adapter, microBatch: 3, padID: 0)
    padded.paddingFree = false
    let (a, b) = (free.meanLoss(of: examples), padded.meanLoss(of: examples))
    #expect(a.tokens == b.tokens && a.tokens == examples.reduce(0) { $0 + $1.trainedCount })
    #expect(abs(a.loss - b.loss) <= 1e-6 * b.loss, "\(a.loss) vs \(b.loss)")
  }

  @Test func paddingFreeIsRefusedWithVirtualTokensAndOffByDefaultThere() throws {
    var settings = TrainingSettings()
    settings.paddingFree = true
    settings.objective = "dpo"
    try settings.validate()
    settings.objective = nil
    settings.prefixTokens = 4
    #expect(throws: (any Error).self) { try settings.validate() }
    do { try settings.validate() } catch { #expect("\(error)".contains("padding_free")) }
    settings.prefixTokens = nil
    settings.promptTokens = 2
    #expect(throws: (any Error).self) { try settings.validate() }
    settings.promptTokens = nil
    try settings.validate()
    // An adapter with virtual tokens passes padded, padding_free or not.
    let (model, _) = try LlamaModel.load(path: TrainerTests.tinyModel)
    var config = LoRAConfig(r: 2, loraAlpha: 4, targetModules: ["q_proj"])
    config.virtualTokens = VirtualTokenConfig(kind: .prompt, tokens: 2)
    let adapter = try LoRAAdapter(config: config, model: model.config, seed: 1)
    let trainer = try Trainer(
      model: model, adapter: adapter, train: Self.data(4, seed: 1), validation: [],
      options: TrainingOptions(steps: 1, batchSize: 2, microBatch: 2, paddingFree: true), padID: 0)
    #expect(!trainer.group.trainers[0].packs)
    try trainer.run { _ in }
    #expect(
      TrainingSettings.Defaults.paddingFree(virtualTokens: false)
        && !TrainingSettings.Defaults.paddingFree(virtualTokens: true))
  }
}
