/// One update's figures, as the metrics file records them.
public struct StepMetrics: Codable, Equatable, Sendable {
  /// 1-based update number.
  public var step: Int
  public var totalSteps: Int
  /// Mean loss over the update's trained tokens.
  public var loss: Double
  public var learningRate: Double
  /// Gradient L2 norm before clipping.
  public var gradientNorm: Double
  /// Tokens in the update's sequences (padding excluded) and how many were trained.
  public var tokens: Int
  public var trainedTokens: Int
  public var seconds: Double
  public var tokensPerSecond: Double
  /// Epochs of the training set consumed so far.
  public var epoch: Double
  /// Seconds left at the average pace so far.
  public var etaSeconds: Double
}

/// What the trainer reports while it runs; the CLI renders these (progress on a terminal,
/// JSON lines otherwise, the metrics file, the report).
public enum TrainingEvent: Sendable {
  case step(StepMetrics)
  /// Mean loss over the validation set after `step` updates.
  case validation(step: Int, loss: Double, tokens: Int)
}
