import Foundation
import LoRAModel
import LoRATraining

/// The training settings of one adapter of a job file: `train`'s per-adapter settings
/// (``TrainingSettings``, read as `settings.rank`, `settings.data`, …) plus
/// `tokens_per_batch`. Encoded flat, with the snake_case keys of docs/job-file.md.
@dynamicMemberLookup
public struct AdapterSettings: Codable, Equatable, Sendable {
  /// The settings `train` knows.
  public var training: TrainingSettings
  /// Batch size in tokens, an alternative to `batch_size` (the run loop fills each update
  /// with sequences until it holds this many tokens).
  public var tokensPerBatch: Int?

  public init(training: TrainingSettings = TrainingSettings(), tokensPerBatch: Int? = nil) {
    self.training = training
    self.tokensPerBatch = tokensPerBatch
  }

  public subscript<Value>(dynamicMember key: KeyPath<TrainingSettings, Value>) -> Value {
    training[keyPath: key]
  }

  public subscript<Value>(dynamicMember key: WritableKeyPath<TrainingSettings, Value>) -> Value {
    get { training[keyPath: key] }
    set { training[keyPath: key] = newValue }
  }

  enum CodingKeys: String, CodingKey {
    case tokensPerBatch = "tokens_per_batch"
  }

  public init(from decoder: any Decoder) throws {
    training = try TrainingSettings(from: decoder)
    tokensPerBatch = try decoder.container(keyedBy: CodingKeys.self).decodeIfPresent(
      Int.self, forKey: .tokensPerBatch)
  }

  public func encode(to encoder: any Encoder) throws {
    try training.encode(to: encoder)
    var container = encoder.container(keyedBy: CodingKeys.self)
    try container.encodeIfPresent(tokensPerBatch, forKey: .tokensPerBatch)
  }

  /// The keys, in the order docs/job-file.md lists them (`tokens_per_batch` after `micro_batch`).
  public static let keys: [String] = TrainingSettings.keys.flatMap {
    $0 == TrainingSettings.CodingKeys.microBatch.stringValue
      ? [$0, CodingKeys.tokensPerBatch.stringValue] : [$0]
  }

  /// Keys a sweep may vary: single values that change how an adapter trains.
  public static let sweepableKeys: [String] = [
    "rank", "alpha", "dropout", "rslora", "use_dora", "init_weights", "lr", "schedule", "warmup", "steps",
    "epochs",
    "batch_size", "micro_batch", "tokens_per_batch", "weight_decay", "loraplus_lr_ratio", "beta",
    "label_smoothing",
    "beta1", "beta2", "eps",
    "max_grad_norm", "seed", "max_seq_len", "train_on_prompt", "pack", "padding_free",
  ]

  /// Checks every value that is set: `tokens_per_batch` and the training settings
  /// (``TrainingSettings/validate()``).
  public func validate() throws(SettingsError) {
    if let v = tokensPerBatch, v < 1 {
      throw SettingsError([CodingKeys.tokensPerBatch.stringValue], "must be at least 1, got \(v)")
    }
    try training.validate()
  }

  /// `self` with every value `other` sets replacing ours. Setting `batch_size` clears an
  /// inherited `tokens_per_batch` and the other way round: they are alternatives (so are a
  /// `rank` and a `rank_ladder`).
  public func overridden(by other: AdapterSettings) -> AdapterSettings {
    var cleared: [String] = []
    if other.batchSize != nil && other.tokensPerBatch == nil {
      cleared.append(CodingKeys.tokensPerBatch.stringValue)
    }
    if other.tokensPerBatch != nil && other.batchSize == nil {
      cleared.append(TrainingSettings.CodingKeys.batchSize.stringValue)
    }
    return merging(other, clearing: cleared + training.keysReplaced(by: other.training))
  }

  /// `self` with every value `other` sets replacing ours, and the `clearing` keys unset.
  public func merging(_ other: AdapterSettings, clearing: [String] = []) -> AdapterSettings {
    let encoder = JSONEncoder()
    guard let mine = try? JSONSerialization.jsonObject(with: encoder.encode(self)) as? [String: Any],
      let theirs = try? JSONSerialization.jsonObject(with: encoder.encode(other)) as? [String: Any]
    else { return other }
    var dictionary = mine.merging(theirs) { _, new in new }
    for key in clearing { dictionary[key] = nil }
    guard let data = try? JSONSerialization.data(withJSONObject: dictionary),
      let decoded = try? JSONDecoder().decode(AdapterSettings.self, from: data)
    else { return self }
    return decoded
  }
}
