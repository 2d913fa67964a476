import Foundation

/// The linear layers of a Llama decoder layer, named as PEFT names them.
public enum LoRATarget: String, CaseIterable, Codable, Sendable, Comparable {
  case q = "q_proj"
  case k = "k_proj"
  case v = "v_proj"
  case o = "o_proj"
  case gate = "gate_proj"
  case up = "up_proj"
  case down = "down_proj"

  /// "self_attn" or "mlp": the block that holds the layer.
  public var block: String { [.q, .k, .v, .o].contains(self) ? "self_attn" : "mlp" }
  /// The Hugging Face module name of this linear in `layer`, e.g. "model.layers.3.self_attn.q_proj".
  public func moduleName(layer: Int) -> String { "model.layers.\(layer).\(block).\(rawValue)" }

  /// (out, in) of the layer's weight.
  public func shape(_ c: LlamaConfig) -> (out: Int, in: Int) {
    switch self {
    case .q: return (c.heads * c.headSize, c.hiddenSize)
    case .k, .v: return (c.kvHeads * c.headSize, c.hiddenSize)
    case .o: return (c.hiddenSize, c.heads * c.headSize)
    case .gate, .up: return (c.intermediateSize, c.hiddenSize)
    case .down: return (c.hiddenSize, c.intermediateSize)
    }
  }

  public static func < (a: LoRATarget, b: LoRATarget) -> Bool {
    allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
  }
}

/// A LoRA adapter's hyperparameters, with PEFT's `adapter_config.json` key names.
///
/// Defaults: r 8, alpha 16, no dropout, q_proj and v_proj on every layer, scale alpha/r
/// (alpha/√r with `use_rslora`), A Kaiming-uniform and B zero (`init_lora_weights: true`;
/// "gaussian" draws A from N(0, 1/r)).
public struct LoRAConfig: Codable, Equatable, Sendable {
  public var r: Int
  public var loraAlpha: Double
  public var loraDropout: Double
  /// Module names ("q_proj", …) or the single entry "all-linear".
  public var targetModules: [String]
  /// Layers that get adapters; nil means all.
  public var layersToTransform: [Int]?
  public var useRslora: Bool
  /// Per-module rank overrides; keys match module names by suffix (PEFT's rule).
  public var rankPattern: [String: Int]
  /// Per-module alpha overrides, matched as `rankPattern`.
  public var alphaPattern: [String: Double]
  /// "default" (Kaiming-uniform A, zero B), "gaussian", "zero" (A and B zero: loading), or
  /// PiSSA's "pissa" (A and B from W0's top-r singular triplets, by a full SVD) and
  /// "pissa_niter_N" (a randomized SVD with N subspace iterations), PEFT's names.
  public var initialization: String
  /// Prompt or prefix tuning trained in the same adapter (our files only: a PEFT LoRA
  /// adapter_config.json never has it; PEFT keeps it in an adapter of its own).
  public var virtualTokens: VirtualTokenConfig?
  /// DoRA (PEFT's `use_dora`): a trained magnitude per output row rescales W0 + s·B·A to
  /// m ⊙ (W0 + s·B·A) / ‖W0 + s·B·A‖ (`DoRA`).
  public var useDora: Bool

  public init(
    r: Int = 8, loraAlpha: Double = 16, loraDropout: Double = 0,
    targetModules: [String] = ["q_proj", "v_proj"],
    layersToTransform: [Int]? = nil, useRslora: Bool = false, rankPattern: [String: Int] = [:],
    alphaPattern: [String: Double] = [:], initialization: String = "default",
    virtualTokens: VirtualTokenConfig? = nil, useDora: Bool = false
  ) {
    self.r = r
    self.loraAlpha = loraAlpha
    self.loraDropout = loraDropout
    self.targetModules = targetModules
    self.layersToTransform = layersToTransform
    self.useRslora = useRslora
    self.rankPattern = rankPattern
    self.alphaPattern = alphaPattern
    self.initialization = initialization
    self.virtualTokens = virtualTokens
    self.useDora = useDora
  }

  enum CodingKeys: String, CodingKey {
    case r
    case loraAlpha = "lora_alpha"
    case loraDropout = "lora_dropout"
    case targetModules = "target_modules"
    case layersToTransform = "layers_to_transform"
    case useRslora = "use_rslora"
    case rankPattern = "rank_pattern"
    case alphaPattern = "alpha_pattern"
    case initialization = "init_lora_weights"
    case virtualTokens = "virtual_tokens"
    case useDora = "use_dora"
  }

  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    r = try c.decodeIfPresent(Int.self, forKey: .r) ?? 8
    loraAlpha = try c.decodeIfPresent(Double.self, forKey: .loraAlpha) ?? 8
    loraDropout = try c.decodeIfPresent(Double.self, forKey: .loraDropout) ?? 0
    if let single = try? c.decode(String.self, forKey: .targetModules) {
      targetModules = [single]
    } else {
      targetModules = try c.decodeIfPresent([String].self, forKey: .targetModules) ?? ["q_proj", "v_proj"]
    }
    if let one = try? c.decode(Int.self, forKey: .layersToTransform) {
      layersToTransform = [one]
    } else {
      layersToTransform = try c.decodeIfPresent([Int].self, forKey: .layersToTransform)
    }
    useRslora = try c.decodeIfPresent(Bool.self, forKey: .useRslora) ?? false
    rankPattern = try c.decodeIfPresent([String: Int].self, forKey: .rankPattern) ?? [:]
    alphaPattern = try c.decodeIfPresent([String: Double].self, forKey: .alphaPattern) ?? [:]
    if let flag = try? c.decode(Bool.self, forKey: .initialization) {
      initialization = flag ? "default" : "zero"
    } else {
      initialization = try c.decodeIfPresent(String.self, forKey: .initialization) ?? "default"
    }
    virtualTokens = try c.decodeIfPresent(VirtualTokenConfig.self, forKey: .virtualTokens)
    useDora = try c.decodeIfPresent(Bool.self, forKey: .useDora) ?? false
  }

  public func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(r, forKey: .r)
    try c.encode(loraAlpha, forKey: .loraAlpha)
    try c.encode(loraDropout, forKey: .loraDropout)
    try c.encode(targetModules, forKey: .targetModules)
    try c.encodeIfPresent(layersToTransform, forKey: .layersToTransform)
    try c.encode(useRslora, forKey: .useRslora)
    try c.encode(rankPattern, forKey: .rankPattern)
    try c.encode(alphaPattern, forKey: .alphaPattern)
    if initialization == "default" {
      try c.encode(true, forKey: .initialization)
    } else {
      try c.encode(initialization, forKey: .initialization)
    }
    try c.encodeIfPresent(virtualTokens, forKey: .virtualTokens)
    // Written only when set, so plain LoRA's headers and files are as before.
    if useDora { try c.encode(true, forKey: .useDora) }
  }

  /// Checks what can be checked without a model: targets, rank, alpha, dropout, init.
  public func validate() throws {
    _ = try targets()
    try virtualTokens?.validate()
    guard r > 0 else { throw LoRAConfigError("rank must be at least 1, got \(r)") }
    guard loraAlpha.isFinite && loraAlpha > 0 else {
      throw LoRAConfigError("lora_alpha must be a positive number, got \(loraAlpha)")
    }
    guard loraDropout.isFinite && loraDropout >= 0 && loraDropout < 1 else {
      throw LoRAConfigError("lora_dropout must be in [0, 1), got \(loraDropout)")
    }
    guard ["default", "gaussian", "zero"].contains(initialization) || pissa != nil else {
      throw LoRAConfigError(
        "init_lora_weights must be true, false, \"gaussian\", \"pissa\" or \"pissa_niter_N\" (N ≥ 1), "
          + "got \"\(initialization)\"")
    }
    if pissa != nil && useDora {
      throw LoRAConfigError("init_lora_weights \(initialization) with use_dora is not supported: choose one")
    }
    for (key, rank) in rankPattern where rank < 1 {
      throw LoRAConfigError("rank_pattern['\(key)'] must be at least 1, got \(rank)")
    }
    for (key, alpha) in alphaPattern where !(alpha.isFinite && alpha > 0) {
      throw LoRAConfigError("alpha_pattern['\(key)'] must be a positive number, got \(alpha)")
    }
  }

  /// The targets this configuration names (validated).
  public func targets() throws -> [LoRATarget] {
    if targetModules == ["all-linear"] { return LoRATarget.allCases }
    // Prompt or prefix tuning alone: an adapter without LoRA modules.
    if targetModules.isEmpty && virtualTokens != nil { return [] }
    guard !targetModules.isEmpty else {
      throw LoRAConfigError(
        "target_modules is empty: name at least one module, or train prompt or prefix tuning alone (prompt_tokens or prefix_tokens)"
      )
    }
    return try targetModules.map { name in
      guard let target = LoRATarget(rawValue: name) else {
        throw LoRAConfigError(
          "target module '\(name)' is not a linear layer of this model (expected all-linear or "
            + LoRATarget.allCases.map(\.rawValue).joined(separator: ", ") + ")")
      }
      return target
    }.sorted()
  }

  /// The rank and alpha of module `name` (e.g. "model.layers.3.self_attn.q_proj"), after the
  /// pattern overrides: a key matches a name equal to it or ending in "." + key (as a regex).
  public func rankAndAlpha(module name: String) -> (rank: Int, alpha: Double) {
    func matches(_ key: String) -> Bool {
      // Swift's own regular expressions: Foundation's NSRegularExpression leaked 2 KiB per
      // compiled pattern of some lengths (found by fuzzing the PEFT config).
      guard let regex = try? Regex("^(.*\\.)?(" + key + ")$") else { return false }
      return name.firstMatch(of: regex) != nil
    }
    let keys = Array(rankPattern.keys).sorted() + Array(alphaPattern.keys).sorted()
    guard let key = keys.first(where: matches) else { return (r, loraAlpha) }
    return (rankPattern[key] ?? r, alphaPattern[key] ?? loraAlpha)
  }

  /// PiSSA's initialisation, if `initialization` asks for it: nil subspace iterations for
  /// "pissa" (a full SVD), N for "pissa_niter_N".
  public var pissa: PiSSAInitialization? {
    if initialization == "pissa" { return PiSSAInitialization(iterations: nil) }
    let prefix = "pissa_niter_"
    guard initialization.hasPrefix(prefix), let n = Int(initialization.dropFirst(prefix.count)), n >= 1 else {
      return nil
    }
    return PiSSAInitialization(iterations: n)
  }

  /// The scale of the update: alpha/r, or alpha/√r with rsLoRA.
  public func scale(rank: Int, alpha: Double) -> Double {
    useRslora ? alpha / Double(rank).squareRoot() : alpha / Double(rank)
  }
}

/// PiSSA's initialisation: a full SVD of W0 (`iterations` nil) or a randomized one with
/// that many subspace iterations.
public struct PiSSAInitialization: Equatable, Sendable {
  public var iterations: Int?
}

/// A LoRA configuration that cannot be applied; the message says which field and why.
public struct LoRAConfigError: Error, Equatable, CustomStringConvertible {
  public var description: String
  public init(_ description: String) { self.description = description }
}
