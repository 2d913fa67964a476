import Foundation
import LoRAModel
import LoRATraining
import Yams

/// Everything `train` can be told, by flags or by a YAML file whose keys are the flags'
/// names in snake_case (docs/train-config.md). Flags win over the file; unset values take
/// the documented defaults.
struct TrainConfiguration: Codable, Equatable {
  var model: String?
  var data: String?
  var validationData: String?
  var validationFraction: Double?
  var output: String?
  var format: String?
  var maxSeqLen: Int?
  var trainOnPrompt: Bool?
  var pack: Bool?
  var skipBadLines: Bool?
  var addEos: Bool?
  var targets: [String]?
  var rank: Int?
  var alpha: Double?
  var dropout: Double?
  var rslora: Bool?
  var layers: [Int]?
  var rankPattern: [String: Int]?
  var alphaPattern: [String: Double]?
  var initWeights: String?
  var lr: Double?
  var schedule: String?
  var warmup: Int?
  var steps: Int?
  var epochs: Double?
  var batchSize: Int?
  var microBatch: Int?
  var weightDecay: Double?
  var beta1: Double?
  var beta2: Double?
  var eps: Double?
  var maxGradNorm: Double?
  var seed: UInt64?
  var evalEvery: Int?
  var threads: Int?
  var overwrite: Bool?
  var checkpointActivations: Bool?
  var checkpointEvery: Int?
  var keep: Int?
  var fullEvery: Int?
  var resume: String?
  var force: Bool?
  var localRanks: Int?
  var checkEvery: Int?

  /// The file's keys: the flags' names in snake_case.
  enum CodingKeys: String, CodingKey {
    case model, data, output, format, pack, targets, rank, alpha, dropout, rslora, layers, lr, schedule,
      warmup
    case steps, epochs, beta1, beta2, eps, seed, threads, overwrite, keep, resume, force
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
    case checkpointActivations = "checkpoint_activations"
    case checkpointEvery = "checkpoint_every"
    case localRanks = "local_ranks"
    case checkEvery = "check_every"
    case fullEvery = "full_every"
  }

  /// The keys a file may use.
  static let keys: Set<String> = [
    "model", "data", "validation_data", "validation_fraction", "output", "format", "max_seq_len",
    "train_on_prompt",
    "pack", "skip_bad_lines", "add_eos", "targets", "rank", "alpha", "dropout", "rslora", "layers",
    "rank_pattern",
    "alpha_pattern", "init_weights", "lr", "schedule", "warmup", "steps", "epochs", "batch_size",
    "micro_batch",
    "weight_decay", "beta1", "beta2", "eps", "max_grad_norm", "seed", "eval_every", "threads", "overwrite",
    "checkpoint_activations", "checkpoint_every", "keep", "full_every", "resume", "force",
    "local_ranks", "check_every",
  ]

  /// Reads a YAML file; unknown keys and wrong types fail with the file, line and key.
  static func load(yamlFile path: String) throws -> TrainConfiguration {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
      throw ConfigError("\(path): cannot read the configuration file")
    }
    let node: Node?
    do { node = try Yams.compose(yaml: text) } catch {
      throw ConfigError("\(path): not valid YAML: \(error)")
    }
    guard let root = node else { return TrainConfiguration() }
    guard let mapping = root.mapping else {
      throw ConfigError("\(path): expected a mapping of option: value")
    }
    for (key, _) in mapping {
      guard let name = key.string, keys.contains(name) else {
        let line = (key.mark?.line).map { ":\($0)" } ?? ""
        throw ConfigError(
          "\(path)\(line): unknown key '\(key.string ?? "?")'; the keys are the train flags in snake_case "
            + "(see swift-lora-dist train --help)")
      }
    }
    do {
      return try YAMLDecoder().decode(TrainConfiguration.self, from: text)
    } catch DecodingError.typeMismatch(let type, let context) {
      throw ConfigError(
        "\(path): key '\(context.codingPath.map(\.stringValue).joined(separator: "."))' must be \(type)")
    } catch {
      throw ConfigError("\(path): \(error)")
    }
  }

  /// `self` with every value `other` sets replacing ours.
  func overridden(by other: TrainConfiguration) throws -> TrainConfiguration {
    let mine = try JSONSerialization.jsonObject(with: JSONEncoder().encode(self)) as! [String: Any]
    let theirs = try JSONSerialization.jsonObject(with: JSONEncoder().encode(other)) as! [String: Any]
    let merged = mine.merging(theirs) { _, new in new }
    return try JSONDecoder().decode(
      TrainConfiguration.self, from: JSONSerialization.data(withJSONObject: merged))
  }
}

/// A configuration that cannot be used; the message names the file, key or flag.
struct ConfigError: Error, CustomStringConvertible {
  var description: String
  init(_ description: String) { self.description = description }
}
