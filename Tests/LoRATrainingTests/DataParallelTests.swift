import Foundation
import LoRAComm
import LoRAKernels
import Testing

@testable import LoRAModel
@testable import LoRATraining

/// N thread-ranks with per-rank batch b train the same adapter as one rank with batch N·b:
/// the same losses step by step and the same final adapter, to float rounding (the sums
/// over ranks are added in another order).
@Suite struct DataParallelTests {
  let base = TrainerTests()

  func trainer(
    _ model: LlamaModel, communicator: any Communicator, dropout: Double = 0.1, validation: Int = 12
  ) throws -> Trainer {
    // A different initialisation on each rank: the broadcast from rank 0 must fix it.
    let adapter = try LoRAAdapter(
      config: LoRAConfig(
        r: 4, loraAlpha: 8, loraDropout: dropout, targetModules: ["q_proj", "v_proj", "down_proj"]),
      model: model.config, seed: 11 + UInt64(communicator.rank))
    return try Trainer(
      model: model, adapter: adapter, train: base.counting(40, seed: 1),
      validation: base.counting(validation, seed: 2),
      options: TrainingOptions(
        steps: 8, batchSize: 8, microBatch: 2, learningRate: 1e-2, schedule: .cosine, warmupSteps: 2,
        seed: 11,
        evaluateEvery: 4),
      padID: 0, communicator: communicator)
  }

  func run(ranks: Int, _ model: LlamaModel) throws -> [(
    losses: [Double], validation: [Double], parameters: [Float]
  )] {
    let shared = UncheckedModel(model: model)
    return try LocalCommunicator.run(ranks: ranks) { comm in
      let t = try trainer(shared.model, communicator: comm)
      var losses: [Double] = []
      var validation: [Double] = []
      try t.run { event in
        switch event {
        case .step(let m): losses.append(m.loss)
        case .validation(_, let loss, _): validation.append(loss)
        case .checkpoint, .reference: break
        }
      }
      return (losses, validation, t.adapter.parameters.values)
    }
  }

  static func relative(_ a: [Float], _ b: [Float]) -> Double {
    var difference = 0.0
    var norm = 0.0
    for (x, y) in zip(a, b) {
      difference += Double(x - y) * Double(x - y)
      norm += Double(y) * Double(y)
    }
    return (difference / max(norm, 1e-30)).squareRoot()
  }

  @Test(arguments: [2, 4])
  func nRanksEqualOneRankWithTheWholeBatch(ranks: Int) throws {
    let (model, _) = try LlamaModel.load(path: TrainerTests.tinyModel)
    let one = try run(ranks: 1, model)[0]
    let many = try run(ranks: ranks, model)
    // Every rank ends with the same adapter, bit for bit.
    for r in 1..<ranks { #expect(many[r].parameters == many[0].parameters) }
    for (a, b) in zip(many[0].losses, one.losses) { #expect(abs(a - b) <= 1e-5 * abs(b), "\(a) vs \(b)") }
    for (a, b) in zip(many[0].validation, one.validation) { #expect(abs(a - b) <= 1e-5 * abs(b)) }
    #expect(many[0].losses.count == 8 && many[0].validation.count == 2)
    let difference = Self.relative(many[0].parameters, one.parameters)
    #expect(difference <= 1e-5, "relative difference \(difference)")
    #expect(one.losses.last! < one.losses.first!)
  }

  @Test func aStopOnOneRankStopsAllAfterTheSameUpdate() throws {
    let (model, _) = try LlamaModel.load(path: TrainerTests.tinyModel)
    let shared = UncheckedModel(model: model)
    let endings = try LocalCommunicator.run(ranks: 2) { comm in
      let t = try trainer(shared.model, communicator: comm, validation: 0)
      return try t.run { event in
        if case .step(let m) = event, m.step == 3, comm.rank == 1 { t.stopRequest.request() }
      }
    }
    // Rank 1 asks during update 3's report; the flag travels with update 4's all-reduce.
    #expect(endings == [.stopped(step: 4), .stopped(step: 4)])
  }
}

/// A model shared read-only by thread-ranks.
struct UncheckedModel: @unchecked Sendable { let model: LlamaModel }
