import Foundation
import LoRAKernels

/// AdamW with decoupled weight decay, exactly as PyTorch's `torch.optim.AdamW` (defaults:
/// betas (0.9, 0.999), eps 1e-8, weight decay 0.01). Its two moments are flat buffers the
/// size of the parameters, so they checkpoint and all-reduce as single blocks.
public final class AdamW: @unchecked Sendable {
  public struct Options: Codable, Equatable, Sendable {
    public var beta1: Double = 0.9
    public var beta2: Double = 0.999
    public var eps: Double = 1e-8
    public var weightDecay: Double = 0.01
    public init(beta1: Double = 0.9, beta2: Double = 0.999, eps: Double = 1e-8, weightDecay: Double = 0.01) {
      self.beta1 = beta1
      self.beta2 = beta2
      self.eps = eps
      self.weightDecay = weightDecay
    }
  }

  public let options: Options
  /// First and second moments: [P] each.
  public let firstMoment: Tensor
  public let secondMoment: Tensor
  /// Updates taken so far.
  public internal(set) var step = 0

  public init(parameterCount: Int, options: Options = Options()) {
    self.options = options
    firstMoment = Tensor(zeros: [parameterCount])
    secondMoment = Tensor(zeros: [parameterCount])
  }

  /// Restores the state of a checkpoint.
  public func restore(step: Int, firstMoment m: Tensor, secondMoment v: Tensor) {
    self.step = step
    firstMoment.copy(from: m)
    secondMoment.copy(from: v)
  }

  /// One update of `parameters` from `gradients` with learning rate `lr`:
  /// p ← p·(1 − lr·wd); m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²;
  /// p ← p − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + eps).
  /// - scaled: ranges of the parameters whose learning rate is `lr × factor` (LoRA+ gives
  ///   every B its own, as PyTorch param groups of their own would: decay and step both
  ///   scale); the rest use `lr`.
  public func update(
    parameters: Tensor, gradients: Tensor, lr: Double, scaled: [Range<Int>] = [], factor: Double = 1
  ) {
    update(parameters: parameters, gradients: gradients, lr: lr, groups: scaled.map { ($0, factor) })
  }

  /// The same with a factor per range (in order, disjoint); a range of factor 0 is frozen:
  /// neither stepped nor decayed, its moments left as they are (PiSSA's initial term).
  public func update(
    parameters: Tensor, gradients: Tensor, lr: Double, groups: [(range: Range<Int>, factor: Double)]
  ) {
    precondition(parameters.count == firstMoment.count && gradients.count == firstMoment.count, "AdamW sizes")
    step += 1
    var start = 0
    for (range, factor) in groups {
      precondition(range.lowerBound >= start && range.upperBound <= parameters.count, "AdamW ranges in order")
      update(start..<range.lowerBound, parameters, gradients, lr: lr)
      if factor != 0 { update(range, parameters, gradients, lr: lr * factor) }
      start = range.upperBound
    }
    update(start..<parameters.count, parameters, gradients, lr: lr)
  }

  /// The update of `range` at the current step with learning rate `lr`.
  private func update(_ range: Range<Int>, _ p: Tensor, _ g: Tensor, lr: Double) {
    let b1 = Float(options.beta1)
    let b2 = Float(options.beta2)
    let decay = Float(1 - lr * options.weightDecay)
    let stepSize = Float(lr / (1 - pow(options.beta1, Double(step))))
    let correction2 = Float((1 - pow(options.beta2, Double(step))).squareRoot())
    let eps = Float(options.eps)
    let m = firstMoment
    let v = secondMoment
    for i in range {
      let grad = g[i]
      let mi = b1 * m[i] + (1 - b1) * grad
      let vi = b2 * v[i] + (1 - b2) * grad * grad
      m[i] = mi
      v[i] = vi
      p[i] = p[i] * decay - stepSize * mi / (vi.squareRoot() / correction2 + eps)
    }
  }

  /// Scales `gradients` so their global L2 norm is at most `maxNorm` (as
  /// `torch.nn.utils.clip_grad_norm_`); returns the norm before clipping.
  @discardableResult
  public static func clipGradientNorm(_ gradients: Tensor, maxNorm: Double) -> Double {
    var sum = 0.0
    for i in 0..<gradients.count { sum += Double(gradients[i]) * Double(gradients[i]) }
    let norm = sum.squareRoot()
    if maxNorm > 0 && norm > maxNorm { gradients.scale(by: Float(maxNorm / (norm + 1e-6))) }
    return norm
  }
}
