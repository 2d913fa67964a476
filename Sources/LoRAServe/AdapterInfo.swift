/// What the store knows of one adapter, resident or not (`GET /v1/models`, `serve` logs).
public struct AdapterInfo: Codable, Sendable, Equatable {
  public var name: String
  /// Where it is (re)loaded from.
  public var path: String
  /// "checkpoint", "PEFT folder" or "GGUF LoRA".
  public var kind: String
  /// The base fingerprint its checkpoint names (nil for PEFT and GGUF LoRA files).
  public var baseFingerprint: String?
  /// The model it is applied to: the served base's name.
  public var parent: String
  /// Adapted linears, e.g. ["q_proj", "v_proj"], and the largest rank.
  public var targets: [String]
  public var rank: Int
  /// Trainable parameters and the RAM they take when resident (4 bytes each).
  public var parameters: Int
  public var bytes: Int
  public var resident: Bool
  public var pinned: Bool
  /// Route signature (mean last hidden state of its training prompts) present.
  public var routable: Bool
  /// Positions its prompt- or prefix-tuning tokens take before every request (nil: none).
  public var virtualTokens: Int?
}

/// Counters of the store since start.
public struct StoreStats: Codable, Sendable, Equatable {
  /// Acquisitions that found the adapter in RAM, and those that read it from disk.
  public var hits: Int
  public var misses: Int
  public var evictions: Int
  public var residentBytes: Int
  public var budgetBytes: Int?
}
