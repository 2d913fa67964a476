import Foundation
import LoRAModel
import LoRATraining
import LoRAYAML

/// Everything `train` can be told, by flags or by a YAML file whose keys are the flags'
/// names in snake_case (docs/training.md). Flags win over the file; unset values take
/// the documented defaults. The per-adapter settings (``TrainingSettings``, read as
/// `settings.rank`, `settings.data`, …) are the ones a job file's adapters have; the rest
/// concern the process. Encoded flat.
@dynamicMemberLookup
public struct TrainConfiguration: Equatable, Sendable {
  public var training = TrainingSettings()
  public var process = ProcessSettings()

  public init() {}

  /// The keys of `train` alone (besides the training settings' keys): the process's.
  public struct ProcessSettings: Codable, Equatable, Sendable {
    public var model: String?
    public var basePrecision: BasePrecision?
    public var attentionPrecision: AttentionPrecision?
    public var threads: Int?
    public var overwrite: Bool?
    public var checkpointActivations: Bool?
    public var resume: String?
    public var force: Bool?
    public var localRanks: Int?
    public var pin: Bool?
    public var numaCopies: Bool?
    public var checkEvery: Int?

    public init() {}

    public enum CodingKeys: String, CodingKey, CaseIterable {
      case model, threads, overwrite
      case basePrecision = "base_precision"
      case attentionPrecision = "attention_precision"
      case checkpointActivations = "checkpoint_activations"
      case resume, force
      case localRanks = "local_ranks"
      case pin
      case numaCopies = "numa_copies"
      case checkEvery = "check_every"
    }
  }

  public subscript<Value>(dynamicMember key: WritableKeyPath<TrainingSettings, Value>) -> Value {
    get { training[keyPath: key] }
    set { training[keyPath: key] = newValue }
  }

  public subscript<Value>(dynamicMember key: WritableKeyPath<ProcessSettings, Value>) -> Value {
    get { process[keyPath: key] }
    set { process[keyPath: key] = newValue }
  }

  /// Reads a YAML file, decoded through Yams' Codable support (this type's `Codable`) and
  /// checked by ``TrainingSettings/validate()`` as a job file's adapter settings are; unknown
  /// keys, wrong types and values out of range fail with the file, line and key.
  public static func load(yamlFile path: String) throws -> TrainConfiguration {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
      throw ConfigError("\(path): cannot read the configuration file")
    }
    guard let root = try YAMLField.document(text, path: path) else { return TrainConfiguration() }
    let entries: [(key: String, field: YAMLField)]
    do { entries = try root.entries() } catch let error as SettingsFileError where error.kind == .wrongType {
      throw ConfigError("\(path): expected a mapping of option: value")
    }
    try YAMLField.checkKeys(
      entries, allowed: ProcessSettings.CodingKeys.allCases.map(\.stringValue) + TrainingSettings.keys,
      what: "keys",
      message: "unknown key; the keys are the train flags in snake_case (see swift-lora-dist train --help)")
    let c = try root.decode(TrainConfiguration.self)
    do { try c.training.validate() } catch { throw root.invalid(at: error.keyPath, error.message) }
    return c
  }

  /// The keys this configuration sets (snake_case, as in the file), sorted.
  public var setKeys: [String] {
    get throws {
      let object = try JSONSerialization.jsonObject(with: JSONEncoder().encode(self)) as! [String: Any]
      return object.keys.sorted()
    }
  }

  /// `self` with every value `other` sets replacing ours (a flag's `--rank` replaces the
  /// file's `rank_ladder`, and `--rank-ladder` its number).
  public func overridden(by other: TrainConfiguration) throws -> TrainConfiguration {
    let mine = try JSONSerialization.jsonObject(with: JSONEncoder().encode(self)) as! [String: Any]
    let theirs = try JSONSerialization.jsonObject(with: JSONEncoder().encode(other)) as! [String: Any]
    var merged = mine.merging(theirs) { _, new in new }
    for key in training.keysReplaced(by: other.training) { merged[key] = nil }
    return try JSONDecoder().decode(
      TrainConfiguration.self, from: JSONSerialization.data(withJSONObject: merged))
  }
}

extension TrainConfiguration: Codable {
  /// Flat: the training settings' keys and the process's side by side.
  public init(from decoder: any Decoder) throws {
    training = try TrainingSettings(from: decoder)
    process = try ProcessSettings(from: decoder)
  }

  public func encode(to encoder: any Encoder) throws {
    try training.encode(to: encoder)
    try process.encode(to: encoder)
  }
}

/// A configuration that cannot be used; the message names the file, key or flag.
public struct ConfigError: Error, CustomStringConvertible {
  public var description: String
  public init(_ description: String) { self.description = description }
}
