import Foundation
import LoRAFormats
import LoRAKernels
import LoRAModel
import Testing

@testable import LoRATraining

/// DPO on the tiny model against PyTorch + PEFT in float64 (scripts/make_variant_fixtures.py):
/// the reference log-probabilities from the same base with the adapter switched off, the
/// policy's, TRL's loss with label smoothing, its metrics, and every lora_A / lora_B gradient
/// through the sequence-weighted backward.
@Suite struct DPOReferenceTests {
  struct Reference: Decodable {
    var beta: Double
    var label_smoothing: Double
    var input_ids: [[Int32]]
    var labels: [[Int32]]
    var policy_logps: [Double]
    var reference_logps: [Double]
    var loss: Double
    var metrics: DPOMetrics
    var grads: [String: [Double]]
  }

  struct Outcome {
    var reference: Reference
    var adapter: LoRAAdapter
    var policy: [Double]
    var referenceLogps: [Double]
    var evaluation: DPOLoss.Evaluation
  }

  /// One DPO step's loss and gradients, with `referenceTerm: false` dropping the reference
  /// (the mutation the test must catch).
  static func run(referenceTerm: Bool = true) throws -> Outcome {
    let folder = PEFTReferenceTests.fixtures.appendingPathComponent("peft-tiny")
    let reference = try JSONDecoder().decode(
      Reference.self, from: Data(contentsOf: folder.appendingPathComponent("dpo.json")))
    let (model, _) = try LlamaModel.load(ModelFiles.open(PEFTReferenceTests.tinyModel), precision: .f32)
    let adapter = try LoRAAdapter.loadPEFT(from: folder.path, model: model.config)
    let (batch, length) = (reference.input_ids.count, reference.input_ids[0].count)
    let tokens = reference.input_ids.flatMap { $0 }
    let targets = ReferenceSupport.targets(labels: reference.labels)
    let gradients = LlamaGradients(
      config: model.config, batch: batch, length: length, maxRank: adapter.modules.map(\.rank).max() ?? 1)
    // The reference: the same base, no adapter, no backward.
    let plain = LlamaActivations(config: model.config, batch: batch, length: length, keepForBackward: false)
    model.forward(tokens: tokens, activations: plain)
    let referenceLosses = model.sequenceLosses(targets: targets, activations: plain, gradients: gradients).map
    {
      referenceTerm ? $0 : 0
    }
    let activations = LlamaActivations(
      config: model.config, batch: batch, length: length, keepForBackward: true, adapter: adapter)
    model.forward(tokens: tokens, activations: activations)
    adapter.gradients.zero()
    let loss = DPOLoss(beta: reference.beta, labelSmoothing: reference.label_smoothing)
    var evaluation: DPOLoss.Evaluation?
    let sums = model.backward(targets: targets, activations: activations, gradients: gradients) { sums in
      let result = loss.evaluate(DPOLoss.Pair.pairs(policyLosses: sums, referenceLosses: referenceLosses))
      evaluation = result
      return result.sequenceWeights
    }
    return Outcome(
      reference: reference, adapter: adapter, policy: sums.map { -$0 },
      referenceLogps: referenceLosses.map { -$0 },
      evaluation: try #require(evaluation))
  }

  @Test func lossMetricsAndEveryGradientMatchTRLAndPEFT() throws {
    let o = try Self.run()
    for (got, want) in zip(
      o.policy + o.referenceLogps, o.reference.policy_logps + o.reference.reference_logps)
    {
      #expect(abs(got - want) <= 1e-5 * abs(want), "log-probability \(got) vs \(want)")
    }
    let e = o.evaluation
    #expect(
      abs(e.loss - o.reference.loss) / o.reference.loss <= 1e-5, "loss \(e.loss) vs \(o.reference.loss)")
    let (got, want) = (e.metrics, o.reference.metrics)
    #expect(got.accuracy == want.accuracy)
    for (g, w) in [
      (got.chosenReward, want.chosenReward), (got.rejectedReward, want.rejectedReward),
      (got.margin, want.margin),
      (got.chosenLogProbability, want.chosenLogProbability),
      (got.rejectedLogProbability, want.rejectedLogProbability),
    ] {
      #expect(abs(g - w) <= 1e-5 * max(abs(w), 1e-3), "metric \(g) vs \(w)")
    }
    #expect(o.reference.grads.count == 2 * o.adapter.modules.count)
    for m in o.adapter.modules {
      for (key, gradient) in [(m.peftKeyA, m.gradA), (m.peftKeyB, m.gradB)] {
        let expected = try #require(o.reference.grads[key], "no reference gradient for \(key)")
        let relative = ReferenceSupport.relativeError(gradient.values, expected)
        #expect(relative <= 1e-4, "\(key): relative L2 error \(relative)")
      }
    }
  }

  /// Without the reference term the loss is another number: the test above would catch it.
  @Test func droppingTheReferenceTermIsCaught() throws {
    let o = try Self.run(referenceTerm: false)
    #expect(abs(o.evaluation.loss - o.reference.loss) / o.reference.loss > 1e-3)
  }

  /// The loss's own derivative against central differences of itself, in Double.
  @Test func dpoGradientsAgreeWithFiniteDifferences() {
    let loss = DPOLoss(beta: 0.3, labelSmoothing: 0.2)
    let pairs = [
      DPOLoss.Pair(
        policyChosen: -12.5, policyRejected: -10.25, referenceChosen: -11, referenceRejected: -11.5),
      DPOLoss.Pair(policyChosen: -3, policyRejected: -30, referenceChosen: -4, referenceRejected: -20),
    ]
    let e = loss.evaluate(pairs)
    let h = 1e-6
    for i in pairs.indices {
      for chosen in [true, false] {
        var up = pairs
        var down = pairs
        if chosen {
          up[i].policyChosen += h
          down[i].policyChosen -= h
        } else {
          up[i].policyRejected += h
          down[i].policyRejected -= h
        }
        let numeric = (loss.evaluate(up).loss - loss.evaluate(down).loss) / (2 * h)
        let analytic = chosen ? e.gradients[i].chosen : e.gradients[i].rejected
        #expect(abs(numeric - analytic) <= 1e-7, "pair \(i) \(chosen ? "chosen" : "rejected")")
      }
    }
    // Far past the overflow of a naive exp: finite.
    let extreme = loss.evaluate([
      .init(policyChosen: -1e4, policyRejected: 0, referenceChosen: 0, referenceRejected: 0)
    ])
    #expect(extreme.loss.isFinite && extreme.gradients[0].chosen.isFinite)
  }
}
