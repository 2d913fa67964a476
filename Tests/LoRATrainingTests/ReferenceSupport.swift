import LoRAKernels
import LoRAModel
import Testing

@testable import LoRATraining

/// What the PyTorch + PEFT reference tests share: Hugging Face labels as our targets, one
/// forward and backward of the mean loss, and the relative error of a gradient.
enum ReferenceSupport {
  /// Hugging Face labels ([B][T], −100 ignored; position t predicts labels[t + 1]) as B·T
  /// next-token targets, −1 where untrained.
  static func targets(labels: [[Int32]]) -> [Int32] {
    labels.flatMap { row in
      (0..<row.count).map { t in t + 1 < row.count && row[t + 1] != -100 ? row[t + 1] : -1 }
    }
  }

  /// Forward, loss and gradients of the mean loss (into `adapter.gradients`, zeroed first);
  /// returns the mean loss.
  static func meanLossStep(
    _ model: LlamaModel, _ adapter: LoRAAdapter, _ activations: LlamaActivations, _ gradients: LlamaGradients,
    tokens: [Int32], targets: [Int32]
  ) -> Double {
    model.forward(tokens: tokens, activations: activations)
    let trained = targets.filter { $0 >= 0 }.count
    adapter.gradients.zero()
    let (sum, count) = model.backward(
      targets: targets, activations: activations, gradients: gradients, gradientScale: 1 / Float(trained))
    return sum / Double(count)
  }

  /// ‖got − want‖ / ‖want‖.
  static func relativeError(_ got: [Float], _ want: [Double]) -> Double {
    var difference = 0.0
    var norm = 0.0
    for (g, w) in zip(got, want) {
      difference += (Double(g) - w) * (Double(g) - w)
      norm += w * w
    }
    return (difference / norm).squareRoot()
  }

  /// A fixture's AdamW settings (PyTorch's names) and its losses: before each of 5 updates
  /// and after the last.
  struct AdamWSteps: Decodable {
    var lr: Double
    var betas: [Double]
    var eps: Double
    var weight_decay: Double
    var losses: [Double]
  }

  /// Five AdamW updates of `adapter` with `steps`' settings (`groups` as `AdamW.update`'s),
  /// each after `step` computed the loss and gradients, then the loss once more: expected
  /// within 1e-4 of the fixture's losses, relative. `label` opens each message.
  static func expectFiveAdamWSteps(
    _ adapter: LoRAAdapter, _ steps: AdamWSteps, groups: [(range: Range<Int>, factor: Double)] = [],
    label: String = "", step: () -> Double
  ) {
    let optimizer = AdamW(
      parameterCount: adapter.parameterCount,
      options: .init(
        beta1: steps.betas[0], beta2: steps.betas[1], eps: steps.eps, weightDecay: steps.weight_decay))
    var losses: [Double] = []
    for _ in 0..<5 {
      losses.append(step())
      optimizer.update(
        parameters: adapter.parameters, gradients: adapter.gradients, lr: steps.lr, groups: groups)
    }
    losses.append(step())
    for (k, (got, want)) in zip(losses, steps.losses).enumerated() {
      #expect(abs(got - want) / want <= 1e-4, "\(label)loss after \(k) steps: \(got) vs \(want)")
    }
  }
}
