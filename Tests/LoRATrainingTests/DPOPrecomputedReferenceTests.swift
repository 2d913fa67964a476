import Foundation
import LoRACheckpoint
import LoRAComm
import LoRAKernels
import Testing

@testable import LoRAModel
@testable import LoRATraining

/// DPO's reference scored once for every training pair (`AdapterState.scoreReference`)
/// against a reference pass in every update: the same training to float's rounding (the
/// table's passes group sequences differently), the same table bits on any rank count, an
/// exact resume, and the default (from two epochs on).
@Suite struct DPOPrecomputedReferenceTests {
  typealias Run = (steps: [StepMetrics], scored: [Int])

  /// Runs `t` to the end, collecting its updates and the pairs of each finished `.reference`.
  static func run(_ t: Trainer, until last: Int? = nil, checkpoints: Trainer.Checkpointing? = nil) throws
    -> Run
  {
    var run: Run = ([], [])
    try t.run(until: last, checkpoints: checkpoints) { event in
      switch event {
      case .step(let m): run.steps.append(m)
      case .reference(let scored, let pairs, let seconds):
        #expect(seconds > 0 && scored <= pairs)
        if scored == pairs { run.scored.append(pairs) }
      case .validation, .checkpoint: break
      }
    }
    return run
  }

  /// 12 updates of 4 pairs over 24 shuffled pairs (two epochs), each way.
  @Test func aPrecomputedReferenceTrainsAsAReferencePassPerUpdate() throws {
    let (model, _) = try LlamaModel.load(path: TrainerTests.tinyModel)
    let passes = try DPOTrainingTests.trainer(model)
    let table = try DPOTrainingTests.trainer(model, precompute: true)
    let (perUpdate, once) = (try Self.run(passes), try Self.run(table))
    #expect(perUpdate.scored.isEmpty && passes.state.referenceTable == nil)
    #expect(once.scored == [24] && table.state.referenceTable?.count == 48)
    #expect(once.steps.count == 12)
    for (a, b) in zip(once.steps, perUpdate.steps) {
      #expect(abs(a.loss - b.loss) <= 1e-5 * b.loss, "update \(a.step): \(a.loss) against \(b.loss)")
      #expect(abs(a.preference!.margin - b.preference!.margin) <= 1e-4 * max(1, abs(b.preference!.margin)))
    }
    #expect(
      DataParallelTests.relative(table.adapter.parameters.values, passes.adapter.parameters.values) <= 1e-4)

    // Each entry is its own sequence's: every pair scored alone, by the base, agrees.
    let examples = table.state.trainingExamples
    let alone = Evaluator(model: model, adapter: nil, microBatch: 2, padID: 0)
    for p in 0..<24 {
      let losses = alone.referenceLosses(of: Array(examples[2 * p..<2 * p + 2]), longest: 8)
      for s in 0..<2 {
        let entry = table.state.referenceTable![2 * p + s]
        #expect(abs(entry - losses[s]) <= 1e-6 * losses[s], "pair \(p), sequence \(s)")
      }
    }
  }

  /// 150 pairs: three chunks of 64, over one rank and over two (chunks 0 and 2 on rank 0).
  @Test func theTableIsTheSameBitsOnAnyRankCount() throws {
    let (model, _) = try LlamaModel.load(path: TrainerTests.tinyModel)
    let one = try DPOTrainingTests.trainer(model, precompute: true, pairs: 150)
    var heard: [Int] = []
    #expect(try one.state.scoreReference(every: 0) { scored, _ in heard.append(scored) }?.pairs == 150)
    #expect(heard == [64, 128, 149], "progress after each chunk, below the whole until it is done")
    let shared = UncheckedModel(model: model)
    let two = try LocalCommunicator.run(ranks: 2) { comm in
      let t = try DPOTrainingTests.trainer(
        shared.model, communicator: comm, microBatch: 1, precompute: true, pairs: 150)
      _ = try t.state.scoreReference()
      return t.state.referenceTable!
    }
    #expect(one.state.referenceTable!.count == 300)
    #expect(two[0] == one.state.referenceTable! && two[1] == one.state.referenceTable!)
  }

  @Test func twoRanksEqualOneAndAResumeIsExact() throws {
    let (model, _) = try LlamaModel.load(path: TrainerTests.tinyModel)
    let one = try DPOTrainingTests.trainer(model, precompute: true)
    let oneRun = try Self.run(one)
    let shared = UncheckedModel(model: model)
    let two = try LocalCommunicator.run(ranks: 2) { comm in
      let t = try DPOTrainingTests.trainer(shared.model, communicator: comm, microBatch: 1, precompute: true)
      let run = try Self.run(t)
      return (run.steps.map(\.loss), run.scored, t.adapter.parameters.values)
    }
    #expect(two[0].2 == two[1].2, "every rank ends with the same adapter")
    #expect(two[0].1 == [24] && two[1].1 == [24])
    for (a, b) in zip(two[0].0, oneRun.steps.map(\.loss)) { #expect(abs(a - b) <= 1e-5 * b, "\(a) vs \(b)") }
    #expect(DataParallelTests.relative(two[0].2, one.adapter.parameters.values) <= 1e-4)

    // Stopped after update 6 of 12 (the second epoch starts at 6), resumed in a new trainer:
    // it scores the table again, to the same bits, and ends as the run that never stopped.
    let resume = ResumeTests()
    let dir = try resume.folder()
    defer { try? FileManager.default.removeItem(at: dir) }
    let first = try DPOTrainingTests.trainer(model, precompute: true)
    let stopped = try Self.run(
      first, until: 6, checkpoints: resume.checkpointing(first, dir, every: 6, fullEvery: 1))
    #expect(stopped.scored == [24] && stopped.steps.count == 6)
    let path = try #require(CheckpointStore.list(dir).last?.url.path)
    let again = try DPOTrainingTests.trainer(model, precompute: true)
    try again.resume(from: CheckpointReader(path: path), fingerprint: "sha256:tiny")
    let rest = try Self.run(again)
    #expect(rest.scored == [24] && rest.steps.map(\.step) == Array(7...12))
    #expect(rest.steps.map(\.loss) == Array(oneRun.steps.map(\.loss)[6...]))
    #expect(again.adapter.parameters.values == one.adapter.parameters.values)
  }

  /// A DPO member of a fused group (with SFT members) scores its table through the group's
  /// run, on every rank, and ends as the same adapter trained alone with its table.
  @Test(arguments: [1, 2]) func aFusedMemberScoresItsTableAndEqualsItselfAlone(ranks: Int) throws {
    let (model, _) = try LlamaModel.load(path: TrainerTests.tinyModel)
    let members = DPOTrainingTests.fusedMembers(dpoSteps: 12, precompute: true)
    let shared = UncheckedModel(model: model)
    let fused = try LocalCommunicator.run(ranks: ranks) { comm in
      let group = try FusedTrainer(model: shared.model, members: members, padID: 0, communicator: comm)
      var (losses, scored) = ([Double](), [Int]())
      try group.run { k, event in
        if case .step(let m) = event, k == 1 { losses.append(m.loss) }
        if case .reference(let done, let pairs, _) = event, done == pairs { scored.append(k) }
      }
      return (losses, scored, group.trainers[1].referenceTable, group.trainers[1].adapter.parameters.values)
    }
    let adapter = try LoRAAdapter(config: members[1].config, model: model.config, seed: 5)
    let alone = try Trainer(
      model: model, adapter: adapter, train: members[1].train, validation: [], options: members[1].options,
      padID: 0)
    let aloneRun = try Self.run(alone)
    for rank in fused {
      #expect(rank.1 == [1], "only the DPO member scores a table")
      #expect(rank.2 == alone.state.referenceTable, "the same table bits on every rank")
      for (a, b) in zip(rank.0, aloneRun.steps.map(\.loss)) {
        #expect(abs(a - b) <= 1e-5 * b, "\(a) vs \(b)")
      }
      #expect(DataParallelTests.relative(rank.3, adapter.parameters.values) <= 3e-5)
    }
  }

  /// A stop requested on one rank of two while the table is scored (300 pairs: 3 rounds of
  /// chunks) stops both after the first round: no update, no table, no checkpoint.
  @Test func aStopWhileScoringStopsEveryRankBeforeTheFirstUpdate() throws {
    let (model, _) = try LlamaModel.load(path: TrainerTests.tinyModel)
    let shared = UncheckedModel(model: model)
    let resume = ResumeTests()
    let dir = try resume.folder()
    defer { try? FileManager.default.removeItem(at: dir) }
    let outcomes = try LocalCommunicator.run(ranks: 2) { comm in
      let t = try DPOTrainingTests.trainer(
        shared.model, communicator: comm, microBatch: 1, precompute: true, pairs: 300)
      if comm.rank == 1 { t.stopRequest.request() }
      var updates = 0
      let checkpoints = comm.rank == 0 ? try resume.checkpointing(t, dir, every: 1, fullEvery: 1) : nil
      let ending = try t.run(checkpoints: checkpoints) { if case .step = $0 { updates += 1 } }
      return (ending, updates, t.state.referenceTable == nil)
    }
    for (rank, outcome) in outcomes.enumerated() {
      #expect(outcome.0 == .stopped(step: 0) && outcome.1 == 0 && outcome.2, "rank \(rank): \(outcome)")
    }
    #expect(CheckpointStore.list(dir).isEmpty)
  }

  /// Validation scores the reference at its first call and reads it afterwards: the loss and
  /// metrics of later validations are the bits of scoring both passes afresh.
  @Test func validationScoresItsReferenceOnce() throws {
    let (model, _) = try LlamaModel.load(path: TrainerTests.tinyModel)
    let t = try DPOTrainingTests.trainer(model, steps: 6)
    let dpo = try #require(t.options.dpo)
    try t.run(until: 3) { _ in }
    let first = try t.state.preferenceValidation(dpo)
    #expect(t.state.validationReferenceLosses?.count == 16)
    _ = try Self.run(t)
    let later = try t.state.preferenceValidation(dpo)
    let fresh = Evaluator(model: model, adapter: t.adapter, microBatch: t.options.microBatch, padID: 0)
      .preferenceSums(of: DPOTrainingTests.pairs(8, seed: 2), loss: dpo)
    #expect(later.loss.loss == fresh.loss / 8 && later.metrics.values == fresh.metrics.map { $0 / 8 })
    #expect(later.loss.loss != first.loss.loss, "the adapter moved between the two")
  }

  /// nil: precompute when the updates take each pair twice on average; an explicit value
  /// wins; next-token training never has a table.
  @Test func theDefaultPrecomputesFromTwoEpochs() throws {
    let (model, _) = try LlamaModel.load(path: TrainerTests.tinyModel)
    // 24 pairs, 4 a step: 11 updates take 44 pairs, 12 take 48.
    #expect(try !DPOTrainingTests.trainer(model, steps: 11, precompute: nil).state.precomputesReference)
    #expect(try DPOTrainingTests.trainer(model, steps: 12, precompute: nil).state.precomputesReference)
    #expect(try !DPOTrainingTests.trainer(model, steps: 40, precompute: false).state.precomputesReference)
    #expect(try DPOTrainingTests.trainer(model, steps: 2, precompute: true).state.precomputesReference)
    #expect(try !TrainerTests().makeTrainer(seed: 1).state.precomputesReference)
  }
}
