import LoRACheckpoint
import LoRAKernels

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
  /// DPO's metrics over the update's pairs (nil for the next-token loss, whose `loss` and
  /// `trainedTokens` are per token; with DPO `loss` is the mean over pairs and
  /// `trainedTokens` the pair count).
  public var preference: DPOMetrics?
  /// This rank's time per phase in the update (shared by the members of a fused group).
  public var phases: PhaseTimes?

  public init(
    step: Int, totalSteps: Int, loss: Double, learningRate: Double, gradientNorm: Double, tokens: Int,
    trainedTokens: Int, seconds: Double, tokensPerSecond: Double, epoch: Double, etaSeconds: Double
  ) {
    self.step = step
    self.totalSteps = totalSteps
    self.loss = loss
    self.learningRate = learningRate
    self.gradientNorm = gradientNorm
    self.tokens = tokens
    self.trainedTokens = trainedTokens
    self.seconds = seconds
    self.tokensPerSecond = tokensPerSecond
    self.epoch = epoch
    self.etaSeconds = etaSeconds
  }
}

/// What the trainer reports while it runs; the CLI renders these (progress on a terminal,
/// JSON lines otherwise, the metrics file, the report).
public enum TrainingEvent: Sendable {
  case step(StepMetrics)
  /// Mean loss over the validation set after `step` updates.
  case validation(step: Int, loss: Double, tokens: Int)
  /// A checkpoint was written (and older ones pruned).
  case checkpoint(CheckpointStore.Saved)
  /// DPO's reference being scored once for every training pair before the first update
  /// (`AdapterState.scoreReference`): `scored` of `pairs` after `seconds`, every few seconds
  /// while it runs, and once more when done (`scored == pairs`).
  case reference(scored: Int, pairs: Int, seconds: Double)
}
