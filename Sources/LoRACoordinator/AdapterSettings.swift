import Foundation
import LoRAModel
import LoRATraining

/// The training settings of one adapter: the per-adapter keys of `train`'s YAML file, with
/// the same snake_case names (docs/training.md), plus `tokens_per_batch`. Unset values are
/// nil and take `train`'s documented defaults (see ``AdapterSettings/TrainDefaults``).
///
/// Encoded as JSON, the keys are exactly `TrainConfiguration`'s, so the CLI can decode a
/// `TrainConfiguration` from it (`tokens_per_batch` aside, which `train` does not know).
public struct AdapterSettings: Codable, Equatable, Sendable {
  public var data: String?
  public var validationData: String?
  public var validationFraction: Double?
  public var format: String?
  public var maxSeqLen: Int?
  public var trainOnPrompt: Bool?
  public var pack: Bool?
  public var skipBadLines: Bool?
  public var addEos: Bool?
  public var targets: [String]?
  public var rank: Int?
  public var alpha: Double?
  public var dropout: Double?
  public var rslora: Bool?
  public var layers: [Int]?
  public var rankPattern: [String: Int]?
  public var alphaPattern: [String: Double]?
  public var initWeights: String?
  public var lr: Double?
  public var schedule: String?
  public var warmup: Int?
  public var steps: Int?
  public var epochs: Double?
  public var batchSize: Int?
  public var microBatch: Int?
  public var weightDecay: Double?
  public var beta1: Double?
  public var beta2: Double?
  public var eps: Double?
  public var maxGradNorm: Double?
  public var seed: UInt64?
  public var evalEvery: Int?
  public var checkpointEvery: Int?
  public var keep: Int?
  public var fullEvery: Int?
  /// Batch size in tokens, an alternative to `batch_size` (the run loop fills each update
  /// with sequences until it holds this many tokens).
  public var tokensPerBatch: Int?
  public var output: String?

  public init() {}

  enum CodingKeys: String, CodingKey, CaseIterable {
    case data, format, pack, targets, rank, alpha, dropout, rslora, layers, lr, schedule, warmup, steps,
      epochs
    case beta1, beta2, eps, seed, keep, output
    case validationData = "validation_data"
    case validationFraction = "validation_fraction"
    case maxSeqLen = "max_seq_len"
    case trainOnPrompt = "train_on_prompt"
    case skipBadLines = "skip_bad_lines"
    case addEos = "add_eos"
    case rankPattern = "rank_pattern"
    case alphaPattern = "alpha_pattern"
    case initWeights = "init_weights"
    case batchSize = "batch_size"
    case microBatch = "micro_batch"
    case weightDecay = "weight_decay"
    case maxGradNorm = "max_grad_norm"
    case evalEvery = "eval_every"
    case checkpointEvery = "checkpoint_every"
    case fullEvery = "full_every"
    case tokensPerBatch = "tokens_per_batch"
  }

  /// The keys, in the order docs/job-file.md lists them.
  public static let keys: [String] = [
    "data", "validation_data", "validation_fraction", "format", "max_seq_len", "train_on_prompt", "pack",
    "skip_bad_lines", "add_eos", "targets", "rank", "alpha", "dropout", "rslora", "layers", "rank_pattern",
    "alpha_pattern", "init_weights", "lr", "schedule", "warmup", "steps", "epochs", "batch_size",
    "micro_batch",
    "tokens_per_batch", "weight_decay", "beta1", "beta2", "eps", "max_grad_norm", "seed", "eval_every",
    "checkpoint_every", "keep", "full_every", "output",
  ]

  /// Keys a sweep may vary: single values that change how an adapter trains.
  public static let sweepableKeys: [String] = [
    "rank", "alpha", "dropout", "rslora", "init_weights", "lr", "schedule", "warmup", "steps", "epochs",
    "batch_size", "micro_batch", "tokens_per_batch", "weight_decay", "beta1", "beta2", "eps", "max_grad_norm",
    "seed", "max_seq_len", "train_on_prompt", "pack",
  ]

  /// `train`'s defaults for the keys the planner needs (docs/training.md).
  public enum TrainDefaults {
    public static let rank = 8
    public static let alpha = 16.0
    public static let lr = 2e-4
    public static let steps = 100
    public static let batchSize = 8
    public static let microBatch = 4
    public static let maxSeqLen = 512
    public static let targets = ["q_proj", "v_proj"]
  }

  /// Sets `key` from a YAML value, checking its type and range; the error names the value's
  /// file, line and key path.
  mutating func set(_ key: String, from field: YAMLField) throws {
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
    case "tokens_per_batch":
      let v = try field.int()
      try check(v >= 1, "must be at least 1, got \(v)")
      tokensPerBatch = v
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

  /// The LoRA configuration these settings describe (train's defaults where unset).
  public var loraConfig: LoRAConfig {
    LoRAConfig(
      r: rank ?? TrainDefaults.rank, loraAlpha: alpha ?? TrainDefaults.alpha, loraDropout: dropout ?? 0,
      targetModules: targets ?? TrainDefaults.targets, layersToTransform: layers, useRslora: rslora ?? false,
      rankPattern: rankPattern ?? [:], alphaPattern: alphaPattern ?? [:],
      initialization: initWeights ?? "default")
  }
}
