import Foundation

/// Direct Preference Optimization's loss (Rafailov et al. 2023; TRL's `loss_type="sigmoid"`,
/// with its `label_smoothing`, the conservative DPO of Mitchell 2023), over pairs of a chosen
/// and a rejected response to one prompt. The reference policy is the frozen base with the
/// adapter switched off. With h = (log π(chosen) − log ref(chosen)) − (log π(rejected) −
/// log ref(rejected)) summed over each response's tokens, a pair's loss is
/// −(1 − ε)·log σ(β·h) − ε·log σ(−β·h), and the batch's loss their mean.
public struct DPOLoss: Codable, Sendable, Equatable {
  /// β: how far the policy may move from the reference (TRL's default 0.1).
  public var beta: Double
  /// ε in [0, 0.5): the assumed probability that a pair's preference is flipped.
  public var labelSmoothing: Double

  public init(beta: Double = 0.1, labelSmoothing: Double = 0) {
    self.beta = beta
    self.labelSmoothing = labelSmoothing
  }

  /// The summed log-probabilities of one pair's responses.
  public struct Pair: Sendable, Equatable {
    public var policyChosen: Double
    public var policyRejected: Double
    public var referenceChosen: Double
    public var referenceRejected: Double

    public init(
      policyChosen: Double, policyRejected: Double, referenceChosen: Double, referenceRejected: Double
    ) {
      self.policyChosen = policyChosen
      self.policyRejected = policyRejected
      self.referenceChosen = referenceChosen
      self.referenceRejected = referenceRejected
    }

    /// The pairs of sequences given by their summed losses (−log p of each response), chosen
    /// and rejected interleaved: [2P] each.
    public static func pairs(policyLosses: [Double], referenceLosses: [Double]) -> [Pair] {
      precondition(policyLosses.count == referenceLosses.count && policyLosses.count % 2 == 0, "pairs")
      return stride(from: 0, to: policyLosses.count, by: 2).map {
        Pair(
          policyChosen: -policyLosses[$0], policyRejected: -policyLosses[$0 + 1],
          referenceChosen: -referenceLosses[$0], referenceRejected: -referenceLosses[$0 + 1])
      }
    }

    /// β·(log π − log ref) of the chosen response: its implicit reward.
    func chosenReward(_ beta: Double) -> Double { beta * (policyChosen - referenceChosen) }
    func rejectedReward(_ beta: Double) -> Double { beta * (policyRejected - referenceRejected) }
  }

  /// What a batch of pairs gives: the mean loss, and for each pair the derivative of that
  /// mean with respect to its chosen and rejected log-probabilities under the policy.
  public struct Evaluation: Sendable, Equatable {
    public var loss: Double
    /// ∂loss/∂ log π(chosen) and ∂loss/∂ log π(rejected), per pair (they are opposite).
    public var gradients: [(chosen: Double, rejected: Double)]
    public var metrics: DPOMetrics

    /// The weights of each sequence's summed loss (−log p) in the backward, chosen and
    /// rejected interleaved as the pairs: ∂loss/∂(−log p) = −∂loss/∂log p.
    public var sequenceWeights: [Float] { gradients.flatMap { [Float(-$0.chosen), Float(-$0.rejected)] } }

    public static func == (l: Evaluation, r: Evaluation) -> Bool {
      l.loss == r.loss && l.metrics == r.metrics && l.gradients.elementsEqual(r.gradients, by: { $0 == $1 })
    }
  }

  /// The loss of `pairs` (their mean), its gradients and TRL's metrics.
  /// - pairs: at least one.
  public func evaluate(_ pairs: [Pair]) -> Evaluation { evaluate(pairs, meanOver: pairs.count) }

  /// The same as a part of the mean over `meanOver` pairs (a global batch split into
  /// micro-batches and ranks): loss, gradients and metrics are sums divided by `meanOver`, so
  /// the parts add up to the whole batch's.
  public func evaluate(_ pairs: [Pair], meanOver: Int) -> Evaluation {
    precondition(!pairs.isEmpty && meanOver >= pairs.count, "DPO needs at least one pair")
    let count = Double(meanOver)
    var loss = 0.0
    var gradients: [(chosen: Double, rejected: Double)] = []
    gradients.reserveCapacity(pairs.count)
    var metrics = DPOMetrics()
    for pair in pairs {
      let chosen = pair.chosenReward(beta)
      let rejected = pair.rejectedReward(beta)
      let z = chosen - rejected  // β·h
      loss += (1 - labelSmoothing) * Self.softplus(-z) + labelSmoothing * Self.softplus(z)
      // d/dz of the pair's loss, then through z = β·(π_c − π_r − …), over the mean.
      let dz = -(1 - labelSmoothing) * Self.sigmoid(-z) + labelSmoothing * Self.sigmoid(z)
      gradients.append((chosen: beta * dz / count, rejected: -beta * dz / count))
      metrics.chosenReward += chosen / count
      metrics.rejectedReward += rejected / count
      metrics.accuracy += (chosen > rejected ? 1 : 0) / count
      metrics.chosenLogProbability += pair.policyChosen / count
      metrics.rejectedLogProbability += pair.policyRejected / count
    }
    metrics.margin = metrics.chosenReward - metrics.rejectedReward
    return Evaluation(loss: loss / count, gradients: gradients, metrics: metrics)
  }

  /// Checks β and ε, naming them as the settings do.
  public func validate() throws(DataError) {
    guard beta.isFinite && beta > 0 else { throw .invalidOption("DPO beta must be positive, got \(beta)") }
    guard labelSmoothing >= 0 && labelSmoothing < 0.5 else {
      throw .invalidOption("DPO label smoothing must be in [0, 0.5), got \(labelSmoothing)")
    }
  }

  /// log(1 + eˣ) without overflow.
  static func softplus(_ x: Double) -> Double { x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)) }
  static func sigmoid(_ x: Double) -> Double { x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x)) }
}

/// TRL's DPO metrics, as batch means: rewards/chosen, rewards/rejected, rewards/margins,
/// rewards/accuracies, logps/chosen, logps/rejected.
public struct DPOMetrics: Codable, Sendable, Equatable {
  /// The six values in order (for all-reduces): chosen, rejected, margin, accuracy, logps.
  public var values: [Double] {
    get { [chosenReward, rejectedReward, margin, accuracy, chosenLogProbability, rejectedLogProbability] }
    set {
      (chosenReward, rejectedReward, margin) = (newValue[0], newValue[1], newValue[2])
      (accuracy, chosenLogProbability, rejectedLogProbability) = (newValue[3], newValue[4], newValue[5])
    }
  }

  public var chosenReward = 0.0
  public var rejectedReward = 0.0
  public var margin = 0.0
  /// The fraction of pairs whose chosen reward exceeds the rejected one's.
  public var accuracy = 0.0
  public var chosenLogProbability = 0.0
  public var rejectedLogProbability = 0.0

  public init() {}

  /// The metrics under their names in metrics.jsonl.
  public var fields: [String: Double] {
    [
      "reward_chosen": chosenReward, "reward_rejected": rejectedReward, "reward_margin": margin,
      "reward_accuracy": accuracy, "logp_chosen": chosenLogProbability,
      "logp_rejected": rejectedLogProbability,
    ]
  }

  enum CodingKeys: String, CodingKey {
    case chosenReward = "reward_chosen"
    case rejectedReward = "reward_rejected"
    case margin = "reward_margin"
    case accuracy = "reward_accuracy"
    case chosenLogProbability = "logp_chosen"
    case rejectedLogProbability = "logp_rejected"
  }
}
