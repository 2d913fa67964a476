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
    "rank", "alpha", "dropout", "rslora", "init_weights", "lr", "schedule", "warmup", "steps", "epochs",
    "batch_size", "micro_batch", "tokens_per_batch", "weight_decay", "beta1", "beta2", "eps", "max_grad_norm",
    "seed", "max_seq_len", "train_on_prompt", "pack",
  ]

  /// Sets `key` from a YAML value, checking its type and range; the error names the value's
  /// file, line and key path.
  mutating func set(_ key: String, from field: YAMLField) throws {
    guard key == CodingKeys.tokensPerBatch.stringValue else { return try training.set(key, from: field) }
    let v = try field.int()
    if v < 1 { throw field.error(.invalidValue, "must be at least 1, got \(v)") }
    tokensPerBatch = v
  }
  /// `self` with every value `other` sets replacing ours. Setting `batch_size` clears an
  /// inherited `tokens_per_batch` and the other way round: they are alternatives.
  public func overridden(by other: AdapterSettings) -> AdapterSettings {
    var merged = self
    let encoder = JSONEncoder()
    guard let mine = try? JSONSerialization.jsonObject(with: encoder.encode(self)) as? [String: Any],
      let theirs = try? JSONSerialization.jsonObject(with: encoder.encode(other)) as? [String: Any]
    else { return other }
    var dictionary = mine.merging(theirs) { _, new in new }
    if other.batchSize != nil && other.tokensPerBatch == nil { dictionary["tokens_per_batch"] = nil }
    if other.tokensPerBatch != nil && other.batchSize == nil { dictionary["batch_size"] = nil }
    if let data = try? JSONSerialization.data(withJSONObject: dictionary),
      let decoded = try? JSONDecoder().decode(AdapterSettings.self, from: data)
    {
      merged = decoded
    }
    return merged
  }
}

extension TrainingSettings {
  /// Sets `key` from a YAML value, checking its type and range; the error names the value's
  /// file, line and key path. Job files and `train --config` files both read their training
  /// keys through this.
  package mutating func set(_ key: String, from field: YAMLField) throws {
    func check(_ ok: Bool, _ message: String) throws {
      if !ok { throw field.error(.invalidValue, message) }
    }
    switch key {
    case "data": data = try field.string()
    case "validation_data": validationData = try field.string()
    case "output": output = try field.string()
    case "validation_fraction":
      let v = try field.double()
      try check(v >= 0 && v < 1, "must be in [0, 1), got \(v)")
      validationFraction = v
    case "format":
      let v = try field.string()
      try check(
        DataFormat(rawValue: v) != nil,
        "unknown format '\(v)'; expected " + DataFormat.allCases.map(\.rawValue).joined(separator: ", "))
      format = v
    case "max_seq_len":
      let v = try field.int()
      try check(v >= 2, "must be at least 2, got \(v)")
      maxSeqLen = v
    case "train_on_prompt": trainOnPrompt = try field.bool()
    case "pack": pack = try field.bool()
    case "skip_bad_lines": skipBadLines = try field.bool()
    case "add_eos": addEos = try field.bool()
    case "targets":
      let v = try field.strings()
      do { _ = try LoRAConfig(targetModules: v).targets() } catch let e as LoRAConfigError {
        throw field.error(.invalidValue, e.description)
      }
      targets = v
    case "rank":
      let v = try field.int()
      try check(v >= 1, "LoRA rank must be at least 1, got \(v)")
      rank = v
    case "alpha":
      let v = try field.double()
      try check(v > 0, "LoRA alpha must be positive, got \(v)")
      alpha = v
    case "dropout":
      let v = try field.double()
      try check(v >= 0 && v < 1, "must be in [0, 1), got \(v)")
      dropout = v
    case "rslora": rslora = try field.bool()
    case "layers":
      let v = try field.ints()
      try check(!v.isEmpty && v.allSatisfy { $0 >= 0 }, "must be layer indices (0 or more), at least one")
      layers = v
    case "rank_pattern":
      var v: [String: Int] = [:]
      for (k, f) in try field.entries() {
        let r = try f.int()
        if r < 1 { throw f.error(.invalidValue, "LoRA rank must be at least 1, got \(r)") }
        v[k] = r
      }
      rankPattern = v
    case "alpha_pattern":
      var v: [String: Double] = [:]
      for (k, f) in try field.entries() {
        let a = try f.double()
        if a <= 0 { throw f.error(.invalidValue, "LoRA alpha must be positive, got \(a)") }
        v[k] = a
      }
      alphaPattern = v
    case "init_weights":
      let v = try field.string()
      try check(["default", "gaussian"].contains(v), "expected default or gaussian, got '\(v)'")
      initWeights = v
    case "lr":
      let v = try field.double()
      try check(v > 0, "learning rate must be positive, got \(v)")
      lr = v
    case "schedule":
      let v = try field.string()
      try check(
        LearningRateSchedule.Kind(rawValue: v) != nil,
        "unknown schedule '\(v)'; expected "
          + LearningRateSchedule.Kind.allCases.map(\.rawValue).joined(separator: ", "))
      schedule = v
    case "warmup":
      let v = try field.int()
      try check(v >= 0, "must be 0 or more, got \(v)")
      warmup = v
    case "steps":
      let v = try field.int()
      try check(v >= 1, "must be at least 1, got \(v)")
      steps = v
    case "epochs":
      let v = try field.double()
      try check(v > 0, "must be positive, got \(v)")
      epochs = v
    case "batch_size":
      let v = try field.int()
      try check(v >= 1, "must be at least 1, got \(v)")
      batchSize = v
    case "micro_batch":
      let v = try field.int()
      try check(v >= 1, "must be at least 1, got \(v)")
      microBatch = v
    case "weight_decay":
      let v = try field.double()
      try check(v >= 0, "must be 0 or more, got \(v)")
      weightDecay = v
    case "beta1", "beta2":
      let v = try field.double()
      try check(v >= 0 && v < 1, "must be in [0, 1), got \(v)")
      if key == "beta1" { beta1 = v } else { beta2 = v }
    case "eps":
      let v = try field.double()
      try check(v > 0, "must be positive, got \(v)")
      eps = v
    case "max_grad_norm":
      let v = try field.double()
      try check(v >= 0, "must be 0 or more, got \(v)")
      maxGradNorm = v
    case "seed": seed = try field.uint64()
    case "eval_every":
      let v = try field.int()
      try check(v >= 0, "must be 0 or more, got \(v)")
      evalEvery = v
    case "checkpoint_every":
      let v = try field.int()
      try check(v >= 0, "must be 0 or more, got \(v)")
      checkpointEvery = v
    case "keep":
      let v = try field.int()
      try check(v >= 1, "must be at least 1, got \(v)")
      keep = v
    case "full_every":
      let v = try field.int()
      try check(v >= 1, "must be at least 1, got \(v)")
      fullEvery = v
    default:
      throw field.keyError(.unknownKey, "unknown key")
    }
  }
}
