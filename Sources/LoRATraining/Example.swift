/// One training sequence: T token ids and, for each, whether it is a prediction target.
///
/// `trained[i]` says whether the loss at position i−1 (which predicts token i) counts.
/// `trained[0]` is always false: nothing comes before the first token to predict it.
public struct Example: Sendable, Equatable, Codable {
  /// T token ids.
  public var tokens: [Int32]
  /// T flags: `trained[i]` is true when token i is a prediction target; `trained[0]` is false.
  public var trained: [Bool]

  /// An example from T tokens and T flags; `trained[0]` is set to false whatever is passed.
  /// `tokens` and `trained` must have the same count (a programming error otherwise).
  public init(tokens: [Int32], trained: [Bool]) {
    precondition(
      tokens.count == trained.count,
      "Example: \(tokens.count) tokens but \(trained.count) trained flags")
    self.tokens = tokens
    self.trained = trained
    if !self.trained.isEmpty { self.trained[0] = false }
  }

  /// The number of prediction targets, the count of true flags in `trained`.
  public var trainedCount: Int {
    trained.reduce(0) { $0 + ($1 ? 1 : 0) }
  }
}
