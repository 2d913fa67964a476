import Foundation

/// The learning rate of each update, as Hugging Face's schedulers compute it: linear warmup
/// from 0 over `warmupSteps`, then constant, linear decay to 0, or cosine decay to 0 at
/// `totalSteps`.
public struct LearningRateSchedule: Codable, Equatable, Sendable {
  public enum Kind: String, Codable, Sendable, CaseIterable {
    case constant
    case linear
    case cosine
  }

  public var kind: Kind
  public var peak: Double
  public var warmupSteps: Int
  public var totalSteps: Int

  public init(kind: Kind, peak: Double, warmupSteps: Int, totalSteps: Int) {
    self.kind = kind
    self.peak = peak
    self.warmupSteps = warmupSteps
    self.totalSteps = totalSteps
  }

  /// The rate of update `step` (0-based).
  public func rate(step: Int) -> Double {
    if step < warmupSteps { return peak * Double(step) / Double(max(1, warmupSteps)) }
    let progress = Double(step - warmupSteps) / Double(max(1, totalSteps - warmupSteps))
    switch kind {
    case .constant: return peak
    case .linear: return peak * max(0, 1 - progress)
    case .cosine: return peak * 0.5 * (1 + cos(Double.pi * min(1, progress)))
    }
  }
}
