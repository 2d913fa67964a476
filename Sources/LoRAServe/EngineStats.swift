/// Counters of the serving engine since start, for `/metrics` and logs.
public struct EngineStats: Codable, Sendable, Equatable {
  /// Per model name as requests named it after routing (the base's name for the base alone).
  public struct PerModel: Codable, Sendable, Equatable {
    public var requests = 0
    public var promptTokens = 0
    public var generatedTokens = 0
    public var cancelled = 0

    public init(requests: Int = 0, promptTokens: Int = 0, generatedTokens: Int = 0, cancelled: Int = 0) {
      self.requests = requests
      self.promptTokens = promptTokens
      self.generatedTokens = generatedTokens
      self.cancelled = cancelled
    }
  }

  public var perModel: [String: PerModel] = [:]
  /// Requests waiting for a place in the batch.
  public var queueDepth = 0
  /// Sequences in the batch.
  public var active = 0
  /// Decode steps run, and the rows they held in total (mean batch = rows / steps).
  public var steps = 0
  public var stepRows = 0
  /// "auto" requests and how many the router sent to the base alone.
  public var routed = 0
  public var routedToBase = 0

  public init() {}
}
