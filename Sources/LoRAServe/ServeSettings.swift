/// The serving engine's settings, with their defaults in one place; `serve`'s options map
/// onto them.
public struct ServeSettings: Codable, Sendable, Equatable {
  /// Most sequences decoded together in one step (continuous batching).
  public var maxBatch: Int = 16
  /// Most requests waiting for a place in the batch before new ones get 429.
  public var maxQueue: Int = 256
  /// Below this cosine similarity "auto" answers with the base alone.
  public var routeThreshold: Float = 0.5
  /// Rows per frozen product call; nil: probed (see `RowInvariantGEMM`).
  public var blockRows: Int?
  /// Largest adapter rank the decoder takes.
  public var maxRank: Int = 256

  public init() {}

  /// Checks ranges; names the setting.
  public func validate() throws(ServeError) {
    guard maxBatch >= 1 else { throw .invalidField(field: "max_batch", reason: "must be at least 1") }
    guard maxQueue >= 1 else { throw .invalidField(field: "max_queue", reason: "must be at least 1") }
    guard routeThreshold >= -1 && routeThreshold <= 1 else {
      throw .invalidField(field: "route_threshold", reason: "must be between -1 and 1")
    }
    if let blockRows, blockRows < 1 { throw .invalidField(field: "block_rows", reason: "must be at least 1") }
  }
}
