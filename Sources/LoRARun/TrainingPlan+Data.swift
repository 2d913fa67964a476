import Foundation
import LoRACheckpoint
import LoRAFormats
import LoRAModel
import LoRATraining

/// An adapter's data: loading and splitting it, the batch and updates it implies, and the
/// hashes every rank compares before training.
extension TrainingPlan {
  /// What `loadData` read.
  public struct LoadedData: Sendable {
    public var dataset: Dataset
    public var train: [Example]
    public var validation: [Example]
    /// The validation file's statistics (nil when validation is a held-out fraction or none).
    public var validationStats: DatasetStats?
  }

  /// The training and validation examples (a validation file, a held-out fraction, or
  /// none), messages rendered in the dataset's chat format or else the one `chatTemplate` (the
  /// model's) shows; with `tokensPerBatch`, sets the batch, and with `epochs` and no `steps`, the
  /// number of updates.
  public mutating func loadData(tokenizer: Tokenizer, chatTemplate: String? = nil, ranks: Int = 1) throws
    -> LoadedData
  {
    let dataset = dataset.resolvingChatFormat(template: chatTemplate, tokenizer: tokenizer)
    // DPO reads preference pairs, each as two examples (chosen, rejected) that stay together.
    let pairs = options.dpo != nil
    func load(_ path: String) throws -> Dataset {
      guard pairs else { return try DatasetLoader.load(path: path, tokenizer: tokenizer, options: dataset) }
      let read = try PreferenceLoader.load(path: path, tokenizer: tokenizer, options: dataset)
      return Dataset(examples: read.pairs.flatMap { [$0.chosen, $0.rejected] }, stats: read.stats)
    }
    let loaded = try load(data)
    var train = loaded.examples
    var validation: [Example] = []
    var validationStats: DatasetStats?
    if let path = validationData {
      let v = try load(path)
      validation = v.examples
      validationStats = v.stats
    } else if let fraction = validationFraction, fraction > 0 {
      (train, validation) = try Dataset.split(
        loaded, validationFraction: fraction, seed: options.seed, groupsOf: pairs ? 2 : 1)
    }
    // What a batch counts: examples, or pairs.
    let units = pairs ? train.count / 2 : train.count
    if let tokens = tokensPerBatch {
      // A batch of about `tokens` tokens: whole micro-batches on every rank.
      let mean = Double(train.reduce(0) { $0 + $1.tokens.count }) / Double(max(units, 1))
      let unit = options.microBatch * ranks
      options.batchSize = max(1, Int((Double(tokens) / max(mean, 1) / Double(unit)).rounded())) * unit
      try options.validate(ranks: ranks)
    }
    if let epochs, requestedSteps == nil {
      options.steps = max(1, Int((epochs * Double(units) / Double(options.batchSize)).rounded(.up)))
    }
    return LoadedData(dataset: loaded, train: train, validation: validation, validationStats: validationStats)
  }

  /// SHA-256 of the settings that shape training (adapter, optimizer, schedule, batch, data
  /// processing), as sorted-key JSON; paths are left out (the data and base hashes cover
  /// what they point to, and they may differ between hosts).
  public func settingsHash() throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    var bytes = [UInt8]()
    bytes += try encoder.encode(lora)
    bytes += try encoder.encode(options)
    bytes += try encoder.encode(dataset)
    return BaseFingerprint.sha256(bytes)
  }

  /// SHA-256 of the training and validation files' bytes.
  public func dataHash() throws -> String {
    var bytes: [UInt8] = []
    for path in [data] + (validationData.map { [$0] } ?? []) {
      guard let contents = FileManager.default.contents(atPath: path) else {
        throw RunError("\(path): cannot read the data file")
      }
      bytes += Array(BaseFingerprint.sha256(Array(contents)).utf8)
    }
    return BaseFingerprint.sha256(bytes)
  }
}

extension TrainingPlan {
  /// Refuses virtual tokens that, with the longest sequence, would not fit the model's
  /// context (RoPE positions): prompt rows and prefix keys take positions 0..<N.
  public func checkContext(_ model: LlamaModel) throws {
    guard let virtual = lora.virtualTokens else { return }
    let limit = min(model.config.contextLength, model.rope.maxPositions)
    let needed = dataset.maxSequenceLength + virtual.positions
    guard needed <= limit else {
      let key = virtual.kind == .prompt ? "prompt_tokens" : "prefix_tokens"
      throw RunError(
        "\(key) \(virtual.tokens) plus max_seq_len \(dataset.maxSequenceLength) need \(needed) positions, "
          + "but the model's context holds \(limit): lower \(key) or max_seq_len")
    }
  }
}
