import Foundation
import LoRATraining
import LoRAYAML

extension AdapterEntry {
  /// The adapter, or its sweep's members, resolved.
  func expand(resolver: PathResolver, jobOutput: String?, outputOrigin: Origin?) throws -> [AdapterJob] {
    var base = settings
    base.data = base.data.map(resolver.resolve)
    base.validationData = base.validationData.map(resolver.resolve)
    base.initAdapter = base.initAdapter.map(resolver.resolve)
    let entryOrigin = field.origin
    // `rank: auto` climbs its ladder as one unit of its own: rungs one after another on
    // its rank group, each from the last one's adapter, never fused with other adapters.
    if base.ladder != nil {
      let rankOrigin = origins["rank"] ?? origins["rank_ladder"] ?? entryOrigin
      if base.validationData == nil && (base.validationFraction ?? 0) <= 0 {
        throw rankOrigin.error(
          .missingKey, "rank: auto decides by the validation loss: set validation_data or validation_fraction"
        )
      }
      if !sweep.isEmpty {
        throw (sweepOrigin ?? entryOrigin).error(
          .invalidValue,
          "rank: auto climbs its own ladder and cannot be swept; sweep the ranks instead (sweep: { rank: [...] })"
        )
      }
      if placement == .fused || group != nil {
        throw rankOrigin.error(
          .invalidValue,
          "rank: auto trains its rungs one after another and cannot be fused; use placement: shared, separate or auto"
        )
      }
    }

    // Prompt and prefix tuning change the rows (or keys) every layer sees: such an adapter
    // trains in a pass of its own, never fused; a sweep of them runs as separate units.
    let virtual = base.virtualTokens != nil
    if virtual && (placement == .fused || group != nil) {
      throw (origins["prompt_tokens"] ?? origins["prefix_tokens"] ?? entryOrigin).error(
        .invalidValue,
        "prompt and prefix tuning train in a pass of their own and cannot be fused; use placement: shared, separate or auto"
      )
    }

    // The output: the adapter's own, or <job output>/<name>; a sweep's members go beneath it.
    let ownOutput = base.output.map(resolver.resolve)
    func outputFolder(_ memberName: String) throws -> String {
      if let ownOutput { return sweep.isEmpty ? ownOutput : ownOutput + "/" + memberName }
      guard let jobOutput else {
        throw entryOrigin.error(.missingKey, "no output folder: set 'output' here or at the top of the file")
      }
      return jobOutput + "/" + memberName
    }
    var group = self.group
    var placement = self.placement
    if group == nil && !sweep.isEmpty && !virtual && (placement == .auto || placement == .fused) {
      group = name
      placement = .fused
    } else if group == nil && placement == .fused {
      group = "fused"
    }
    var origins = self.origins
    origins["name"] = nameOrigin
    if ownOutput == nil, let outputOrigin { origins["output"] = outputOrigin }

    guard !sweep.isEmpty else {
      base.output = try outputFolder(name)
      try Self.checkBatch(base, origins: origins)
      return [
        AdapterJob(
          name: name, order: 0, settings: base, placement: placement, group: group, ranks: ranks,
          priority: priority,
          sweep: nil, origin: entryOrigin, origins: origins)
      ]
    }
    // Cartesian product, the first key outermost.
    var combinations: [[(key: String, field: YAMLField)]] = [[]]
    for (key, values) in sweep {
      combinations = combinations.flatMap { prefix in values.map { prefix + [(key, $0)] } }
    }
    return try combinations.enumerated().map { index, combination in
      var settings = base
      var memberOrigins = origins
      var parts: [String] = [name]
      var values: [[String]] = []
      settings = settings.merging(try YAMLField.adapterSettings(combination))
      for (key, field) in combination {
        memberOrigins[key] = field.origin
        let text = settings.text(of: key)
        parts.append(Self.abbreviation(key) + text)
        values.append([key, text])
      }
      let memberName = parts.joined(separator: "-").map { Self.allowed.contains($0) ? $0 : "_" }.reduce("") {
        $0 + String($1)
      }
      memberOrigins["name"] = sweepOrigin
      settings.output = try outputFolder(memberName)
      if let halving {
        let steps = settings.steps ?? (settings.epochs == nil ? TrainingSettings.Defaults.steps : nil)
        if let steps, let last = halving.rungs.last, last >= steps {
          throw (halvingOrigin ?? entryOrigin).error(
            .invalidValue, "rung \(last) is not below \(memberName)'s \(steps) steps")
        }
      }
      try Self.checkBatch(settings, origins: memberOrigins)
      return AdapterJob(
        name: memberName, order: 0, settings: settings, placement: placement, group: group, ranks: ranks,
        priority: priority,
        sweep: SweepMember(
          sweep: name, index: index, count: combinations.count, values: values, successiveHalving: halving),
        origin: entryOrigin, origins: memberOrigins)
    }
  }

  static let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")

  /// The short form of a swept key in member names: r, a, lr, d; others as written.
  static func abbreviation(_ key: String) -> String {
    ["rank": "r", "alpha": "a", "dropout": "d", "lr": "lr"][key] ?? key
  }

  /// `batch_size` must be a multiple of `micro_batch`.
  static func checkBatch(_ settings: AdapterSettings, origins: [String: Origin]) throws {
    guard settings.tokensPerBatch == nil else { return }
    let batch = settings.batchSize ?? TrainingSettings.Defaults.batchSize
    let micro = settings.microBatch ?? TrainingSettings.Defaults.microBatch
    if batch % micro != 0 {
      let origin = origins["micro_batch"] ?? origins["batch_size"] ?? origins["name"]!
      throw origin.error(.invalidValue, "batch_size \(batch) is not a multiple of micro_batch \(micro)")
    }
  }
}

extension AdapterSettings {
  /// Whether `key` has a value.
  func valueIsSet(_ key: String) -> Bool {
    (try? JSONSerialization.jsonObject(with: JSONEncoder().encode(self)) as? [String: Any])?[key] != nil
  }

  /// The value of `key` as text for names: integers as written, numbers in Swift's shortest form.
  func text(of key: String) -> String {
    guard let object = try? JSONSerialization.jsonObject(with: JSONEncoder().encode(self)) as? [String: Any],
      let value = object[key]
    else { return "" }
    switch key {
    case "lr", "alpha", "dropout", "epochs", "weight_decay", "loraplus_lr_ratio", "beta", "label_smoothing",
      "beta1", "beta2", "eps", "max_grad_norm":
      return (value as? NSNumber).map { "\($0.doubleValue)" } ?? "\(value)"
    case "rslora", "use_dora", "train_on_prompt", "pack", "padding_free":
      return (value as? NSNumber).map { $0.boolValue ? "true" : "false" } ?? "\(value)"
    default:
      return "\(value)"
    }
  }
}
