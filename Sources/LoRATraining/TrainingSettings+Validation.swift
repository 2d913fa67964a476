import LoRAFormats
import LoRAModel

/// A setting out of range or not one of the allowed names: its key path (`rank`,
/// `rank_pattern.q_proj`) and what was expected. A file reader adds the file and line.
public struct SettingsError: Error, Equatable, Sendable, CustomStringConvertible {
  /// The key, then map keys beneath it.
  public var keyPath: [String]
  public var message: String

  public init(_ keyPath: [String], _ message: String) {
    self.keyPath = keyPath
    self.message = message
  }

  public var description: String { keyPath.joined(separator: ".") + ": " + message }
}

extension TrainingSettings {
  /// Checks the range of every value that is set: the one place these rules live, for
  /// `train`'s flags and file and for each adapter of a job file (docs/training.md).
  public func validate() throws(SettingsError) {
    typealias K = CodingKeys
    func names(_ all: [String]) -> String { all.joined(separator: ", ") }
    if let v = validationFraction {
      try Self.check(.validationFraction, v >= 0 && v < 1, "must be in [0, 1), got \(v)")
    }
    if let v = format {
      try Self.check(
        .format, DataFormat(rawValue: v) != nil,
        "format '\(v)' is not one of \(names(DataFormat.allCases.map(\.rawValue)))")
    }
    if let v = chatFormat {
      try Self.check(
        .chatFormat, ChatFormat(rawValue: v) != nil, "chat format '\(v)' is not one of \(ChatFormat.names)")
    }
    if let v = maxSeqLen { try Self.check(.maxSeqLen, v >= 2, "must be at least 2, got \(v)") }
    if let v = targets, v != ["none"] {
      do { _ = try LoRAConfig(targetModules: v).targets() } catch {
        throw SettingsError([K.targets.stringValue], "\(error)")
      }
    }
    try validateVirtualTokens()
    if let v = rank { try Self.check(.rank, v >= 1, "LoRA rank must be at least 1, got \(v)") }
    if let v = rankLadder {
      try Self.check(
        .rankLadder, v.count >= 2 && v[0] >= 1 && zip(v, v.dropFirst()).allSatisfy { $0 < $1 },
        "expected at least two increasing ranks from 1 up, got \(v)")
    }
    if let v = rankTolerance {
      try Self.check(.rankTolerance, v >= 0 && v < 1, "must be in [0, 1), got \(v)")
    }
    if let v = alpha { try Self.check(.alpha, v > 0 && v.isFinite, "LoRA alpha must be positive, got \(v)") }
    if let v = dropout { try Self.check(.dropout, v >= 0 && v < 1, "must be in [0, 1), got \(v)") }
    if let v = layers {
      try Self.check(
        .layers, !v.isEmpty && v.allSatisfy { $0 >= 0 }, "must be layer indices (0 or more), at least one")
    }
    for (module, r) in (rankPattern ?? [:]).sorted(by: { $0.key < $1.key }) where r < 1 {
      throw SettingsError([K.rankPattern.stringValue, module], "LoRA rank must be at least 1, got \(r)")
    }
    for (module, a) in (alphaPattern ?? [:]).sorted(by: { $0.key < $1.key }) where !(a > 0 && a.isFinite) {
      throw SettingsError([K.alphaPattern.stringValue, module], "LoRA alpha must be positive, got \(a)")
    }
    if let v = initWeights {
      let pissa = LoRAConfig(initialization: v).pissa != nil
      try Self.check(
        .initWeights, ["default", "gaussian"].contains(v) || pissa,
        "expected default, gaussian, pissa or pissa_niter_N (N ≥ 1), got '\(v)'")
      try Self.check(
        .initWeights, !pissa || initAdapter == nil,
        "\(v) starts A and B from the base's SVD, and init_adapter from an adapter: choose one")
      try Self.check(
        .initWeights, !pissa || useDora != true, "\(v) with use_dora is not supported: choose one")
    }
    // rank: auto grows each rung's adapter into the next (AdapterResize): plain LoRA only.
    try Self.check(
      .rank,
      ladder == nil || (useDora != true && LoRAConfig(initialization: initWeights ?? "default").pissa == nil),
      "auto grows each rung's adapter into the next rank, which DoRA's magnitudes and PiSSA's start do not survive; "
        + "give a rank")
    try validateOptimization()
  }

  /// Prompt or prefix tuning: one of them, at least one virtual token, a projection only
  /// with a prefix, and something to train when `targets: none`.
  private func validateVirtualTokens() throws(SettingsError) {
    typealias K = CodingKeys
    if let v = promptTokens {
      try Self.check(.promptTokens, v >= 1, "must be at least 1 virtual token, got \(v)")
    }
    if let v = prefixTokens {
      try Self.check(.prefixTokens, v >= 1, "must be at least 1 virtual token, got \(v)")
    }
    try Self.check(
      .prefixTokens, promptTokens == nil || prefixTokens == nil,
      "give either prompt_tokens (prompt tuning) or prefix_tokens (prefix tuning), not both")
    if let v = prefixProjection {
      try Self.check(.prefixProjection, v >= 1, "the projection's hidden size must be at least 1, got \(v)")
      try Self.check(
        .prefixProjection, prefixTokens != nil, "reparameterises prefix tuning: set prefix_tokens as well")
    }
    try Self.check(
      .targets, targets != ["none"] || virtualTokens != nil,
      "none leaves nothing to train: name LoRA modules, or set prompt_tokens or prefix_tokens")
  }

  /// The optimizer, schedule, batch, validation and checkpoint settings.
  private func validateOptimization() throws(SettingsError) {
    if let v = lr {
      try Self.check(.lr, v > 0 && v.isFinite, "learning rate must be a positive number, got \(v)")
    }
    if let v = schedule {
      try Self.check(
        .schedule, LearningRateSchedule.Kind(rawValue: v) != nil,
        "schedule '\(v)' is not one of "
          + LearningRateSchedule.Kind.allCases.map(\.rawValue).joined(separator: ", "))
    }
    if let v = warmup { try Self.check(.warmup, v >= 0, "must be 0 or more, got \(v)") }
    if let v = steps { try Self.check(.steps, v >= 1, "must be at least 1, got \(v)") }
    if let v = epochs { try Self.check(.epochs, v > 0 && v.isFinite, "must be positive, got \(v)") }
    if let v = batchSize { try Self.check(.batchSize, v >= 1, "must be at least 1, got \(v)") }
    if let v = microBatch { try Self.check(.microBatch, v >= 1, "must be at least 1, got \(v)") }
    if let v = balance {
      try Self.check(
        .balance, BatchBalance(rawValue: v) != nil,
        "'\(v)' is not one of " + BatchBalance.allCases.map(\.rawValue).joined(separator: ", "))
    }
    if paddingFree == true {
      try Self.check(
        .paddingFree, (promptTokens ?? 0) == 0 && (prefixTokens ?? 0) == 0,
        "applies to adapters without prompt or prefix tokens (their virtual tokens pass padded)"
      )
    }
    if let v = weightDecay {
      try Self.check(.weightDecay, v >= 0 && v.isFinite, "must be 0 or more, got \(v)")
    }
    if let v = objective {
      try Self.check(.objective, v == "sft" || v == "dpo", "'\(v)' is not one of sft, dpo")
    }
    if let v = beta { try Self.check(.beta, v > 0 && v.isFinite, "must be positive, got \(v)") }
    if let v = labelSmoothing {
      try Self.check(.labelSmoothing, v >= 0 && v < 0.5, "must be in [0, 0.5), got \(v)")
    }
    if let v = loraplusLRRatio {
      try Self.check(
        .loraplusLRRatio, v > 0 && v.isFinite, "must be a positive number (PEFT suggests 16), got \(v)")
    }
    if let v = beta1 { try Self.check(.beta1, v >= 0 && v < 1, "must be in [0, 1), got \(v)") }
    if let v = beta2 { try Self.check(.beta2, v >= 0 && v < 1, "must be in [0, 1), got \(v)") }
    if let v = eps { try Self.check(.eps, v > 0 && v.isFinite, "must be positive, got \(v)") }
    if let v = maxGradNorm {
      try Self.check(.maxGradNorm, v >= 0 && v.isFinite, "must be 0 or more, got \(v)")
    }
    if let v = evalEvery { try Self.check(.evalEvery, v >= 0, "must be 0 or more, got \(v)") }
    if let v = checkpointEvery { try Self.check(.checkpointEvery, v >= 0, "must be 0 or more, got \(v)") }
    if let v = keep { try Self.check(.keep, v >= 1, "must be at least 1, got \(v)") }
    if let v = fullEvery { try Self.check(.fullEvery, v >= 1, "must be at least 1, got \(v)") }
  }

  /// Throws `message` about `key` unless `ok`.
  private static func check(
    _ key: CodingKeys, _ ok: Bool, _ message: @autoclosure () -> String
  ) throws(SettingsError) {
    if !ok { throw SettingsError([key.stringValue], message()) }
  }
}
