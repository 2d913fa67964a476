import Foundation
import LoRAFormats
import LoRAKernels
import Testing

@testable import LoRAModel
@testable import LoRATraining

/// DoRA against PyTorch + PEFT (`use_dora`) in float64 on the tiny model, every linear
/// adapted (scripts/make_variant_fixtures.py): the adapter PEFT saved, loaded through our
/// PEFT reader; the forward's logits, the loss, the gradient of every lora_A, lora_B and
/// lora_magnitude_vector, and five AdamW steps.
@Suite struct DoRAReferenceTests {
  /// The forward's logits at each sequence's last position, beside PEFTReferenceTests' fields.
  struct Logits: Decodable { var last_logits: [[Double]] }

  let peft = PEFTReferenceTests()

  func setUp() throws -> PEFTReferenceTests.Setup { try peft.setUp("peft-tiny-dora") }

  func step(_ s: PEFTReferenceTests.Setup) -> Double { peft.step(s) }

  @Test func adapterLoadsWithItsMagnitudes() throws {
    let s = try setUp()
    #expect(s.adapter.config.useDora)
    #expect(s.adapter.modules.count == 14)
    for m in s.adapter.modules {
      let magnitude = try #require(m.magnitude)
      #expect(magnitude.count == m.outFeatures && magnitude.values.allSatisfy { $0 > 0 })
    }
  }

  @Test func forwardLossAndEveryGradientMatchPEFT() throws {
    let s = try setUp()
    let loss = step(s)
    #expect(abs(loss - s.reference.loss) / s.reference.loss <= 1e-5, "loss \(loss) vs \(s.reference.loss)")
    #expect(s.reference.grads.count == 3 * s.adapter.modules.count)
    for m in s.adapter.modules {
      for (key, gradient) in [
        (m.peftKeyA, m.gradA), (m.peftKeyB, m.gradB), (m.peftKeyMagnitude, m.gradMagnitude!),
      ] {
        let expected = try #require(s.reference.grads[key], "no reference gradient for \(key)")
        #expect(expected.count == gradient.count)
        let relative = ReferenceSupport.relativeError(gradient.values, expected)
        #expect(relative <= 1e-4, "\(key): relative L2 error \(relative)")
      }
    }
    // The forward's logits at each sequence's last position.
    let logitsURL = PEFTReferenceTests.fixtures.appendingPathComponent("peft-tiny-dora/reference.json")
    let expected = try JSONDecoder().decode(Logits.self, from: Data(contentsOf: logitsURL)).last_logits
    let (batch, length) = (s.activations.batch, s.activations.length)
    let (width, vocabulary) = (s.model.config.hiddenSize, s.model.config.vocabularySize)
    let logits = Tensor(zeros: [1, vocabulary])
    for b in 0..<batch {
      let row = s.activations.finalNormed.view(offset: ((b + 1) * length - 1) * width, shape: [1, width])
      s.model.logits(into: logits, hidden: row)
      let relative = ReferenceSupport.relativeError(logits.values, expected[b])
      #expect(relative <= 1e-5, "sequence \(b)'s last logits: relative error \(relative)")
    }
  }

  @Test func fiveAdamWStepsMatchPyTorch() throws {
    let s = try setUp()
    ReferenceSupport.expectFiveAdamWSteps(s.adapter, try #require(s.reference.steps)) { step(s) }
  }

  /// A fresh DoRA adapter starts as the plain LoRA one with the same A and B (m = ‖W0 + s·B·A‖),
  /// and activation checkpointing recomputes the same gradients.
  @Test func freshDoRAEqualsLoRAAndCheckpointingKeepsTheGradients() throws {
    let s = try setUp()
    let plain = try LoRAAdapter(
      config: LoRAConfig(r: 4, loraAlpha: 8, targetModules: ["all-linear"]), model: s.model.config, seed: 0)
    for (p, d) in zip(plain.modules, s.adapter.modules) {
      p.a.copy(from: d.a)
      p.b.copy(from: d.b)
    }
    s.model.resetMagnitudes(of: s.adapter)
    let (batch, length) = (s.activations.batch, s.activations.length)
    let plainActivations = LlamaActivations(
      config: s.model.config, batch: batch, length: length, keepForBackward: true, adapter: plain)
    let lora = ReferenceSupport.meanLossStep(
      s.model, plain, plainActivations, s.gradients, tokens: s.tokens, targets: s.targets)
    let dora = step(s)
    #expect(abs(lora - dora) <= 1e-5 * lora, "LoRA \(lora) vs DoRA at m = ‖W‖ \(dora)")
    for (p, d) in zip(plain.modules, s.adapter.modules) {
      #expect(ReferenceSupport.relativeError(d.gradB.values, p.gradB.values.map(Double.init)) <= 1e-4)
    }
    let gradients = s.adapter.gradients.values
    let checkpointed = LlamaActivations(
      config: s.model.config, batch: batch, length: length, keepForBackward: true, adapter: s.adapter,
      checkpointed: true)
    _ = ReferenceSupport.meanLossStep(
      s.model, s.adapter, checkpointed, s.gradients, tokens: s.tokens, targets: s.targets)
    #expect(s.adapter.gradients.values == gradients)
  }
}
