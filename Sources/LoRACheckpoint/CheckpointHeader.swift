import LoRAKernels
import LoRAModel

/// Constants of the file format (docs/checkpoint-format.md).
public enum CheckpointFormat {
  /// The format version this build writes and the newest it reads.
  public static let version: UInt32 = 1
  /// "SLDCKPT\0" at the start, "SLDCEND\0" at the end.
  static let magic: [UInt8] = Array("SLDCKPT".utf8) + [0]
  static let endMagic: [UInt8] = Array("SLDCEND".utf8) + [0]
  /// Magic, version, header length.
  static let preambleSize = 16
  /// Table offset, table length, SHA-256, end magic.
  static let footerSize = 56
  /// The file name extension.
  public static let fileExtension = "sldckpt"
  /// What `code_version` says.
  public static let codeVersion = "swift-lora-dist 0.5.0"
}

/// The JSON header of a checkpoint: what the adapter is, which base it belongs to, and
/// where its training stood.
public struct CheckpointHeader: Codable, Equatable, Sendable {
  public enum Kind: String, Codable, Sendable {
    /// Adapter, AdamW moments and training state: `train --resume` continues from it.
    case resumable
    /// The adapter only.
    case weights
  }

  /// One adapted linear layer: resolved rank, alpha and scale, and where its A [R, IN] and
  /// then B [OUT, R] start in the flat `lora` tensor.
  public struct Module: Codable, Equatable, Sendable {
    public var name: String
    public var rank: Int
    public var alpha: Double
    public var scale: Double
    public var inFeatures: Int
    public var outFeatures: Int
    public var offset: Int

    public init(
      name: String, rank: Int, alpha: Double, scale: Double, inFeatures: Int, outFeatures: Int, offset: Int
    ) {
      self.name = name
      self.rank = rank
      self.alpha = alpha
      self.scale = scale
      self.inFeatures = inFeatures
      self.outFeatures = outFeatures
      self.offset = offset
    }

    enum CodingKeys: String, CodingKey {
      case name, rank, alpha, scale, offset
      case inFeatures = "in"
      case outFeatures = "out"
    }
  }

  /// The base model the adapter was trained on.
  public struct Base: Codable, Equatable, Sendable {
    /// "sha256:" + hex (see `BaseFingerprint`).
    public var fingerprint: String
    /// The model path or name it was loaded from (informational).
    public var source: String
    public var config: LlamaConfig

    public init(fingerprint: String, source: String, config: LlamaConfig) {
      self.fingerprint = fingerprint
      self.source = source
      self.config = config
    }
  }

  /// Where training stood when the checkpoint was written.
  public struct Training: Codable, Equatable, Sendable {
    /// Updates completed.
    public var step: Int
    public var totalSteps: Int
    public var tokensSeen: Int
    public var trainedTokensSeen: Int
    /// The data cursor: the next position in the global sample order.
    public var samplesSeen: Int
    /// Sequences per update over all ranks.
    public var globalBatch: Int
    /// Training examples the sample order permutes; a resume checks the data still has them.
    public var exampleCount: Int
    public var shuffle: Bool
    /// Ranks of the run that wrote it (informational: resume works on any count).
    public var ranks: Int
    public var lastLoss: Double?

    public init(
      step: Int, totalSteps: Int, tokensSeen: Int, trainedTokensSeen: Int, samplesSeen: Int, globalBatch: Int,
      exampleCount: Int, shuffle: Bool, ranks: Int, lastLoss: Double?
    ) {
      self.step = step
      self.totalSteps = totalSteps
      self.tokensSeen = tokensSeen
      self.trainedTokensSeen = trainedTokensSeen
      self.samplesSeen = samplesSeen
      self.globalBatch = globalBatch
      self.exampleCount = exampleCount
      self.shuffle = shuffle
      self.ranks = ranks
      self.lastLoss = lastLoss
    }

    enum CodingKeys: String, CodingKey {
      case step, shuffle, ranks
      case totalSteps = "total_steps"
      case tokensSeen = "tokens_seen"
      case trainedTokensSeen = "trained_tokens_seen"
      case samplesSeen = "samples_seen"
      case globalBatch = "global_batch"
      case exampleCount = "example_count"
      case lastLoss = "last_loss"
    }
  }

  /// The learning-rate schedule (Hugging Face's: warmup, then constant, linear or cosine).
  public struct Schedule: Codable, Equatable, Sendable {
    public var kind: String
    public var peak: Double
    public var warmupSteps: Int
    public var totalSteps: Int
    /// The rate of the next update.
    public var nextRate: Double

    public init(kind: String, peak: Double, warmupSteps: Int, totalSteps: Int, nextRate: Double) {
      self.kind = kind
      self.peak = peak
      self.warmupSteps = warmupSteps
      self.totalSteps = totalSteps
      self.nextRate = nextRate
    }

    enum CodingKeys: String, CodingKey {
      case kind, peak
      case warmupSteps = "warmup_steps"
      case totalSteps = "total_steps"
      case nextRate = "next_rate"
    }
  }

  /// AdamW's hyperparameters and step count; its moments are the `adamw.*` tensors.
  public struct Optimizer: Codable, Equatable, Sendable {
    public var name: String
    public var step: Int
    public var beta1: Double
    public var beta2: Double
    public var eps: Double
    public var weightDecay: Double
    /// Gradient-norm clipping before each step (0: off).
    public var maxGradNorm: Double
    /// LoRA+'s ratio of B's learning rate to A's; absent for plain LoRA (1).
    public var loraplusLRRatio: Double?
    /// The objective when it is not the next-token loss ("dpo"), with DPO's β and label
    /// smoothing; all absent for SFT.
    public var objective: String?
    public var beta: Double?
    public var labelSmoothing: Double?

    public init(
      name: String, step: Int, beta1: Double, beta2: Double, eps: Double, weightDecay: Double,
      maxGradNorm: Double, loraplusLRRatio: Double? = nil
    ) {
      self.loraplusLRRatio = loraplusLRRatio
      self.name = name
      self.step = step
      self.beta1 = beta1
      self.beta2 = beta2
      self.eps = eps
      self.weightDecay = weightDecay
      self.maxGradNorm = maxGradNorm
    }

    enum CodingKeys: String, CodingKey {
      case name, step, beta1, beta2, eps
      case weightDecay = "weight_decay"
      case maxGradNorm = "max_grad_norm"
      case loraplusLRRatio = "loraplus_lr_ratio"
      case objective, beta
      case labelSmoothing = "label_smoothing"
    }
  }

  /// Every random draw is a function of the seed and a counter, so this is the whole state.
  public struct RNG: Codable, Equatable, Sendable {
    public var algorithm: String
    public var seed: UInt64
    public var streams: String

    public init(seed: UInt64) {
      self.seed = seed
      algorithm = "xoshiro256** seeded by SplitMix64"
      streams =
        "counter-based: init from seed; shuffle of epoch e from (seed, e); dropout of update s, micro-batch m "
        + "from (seed, s, m)"
    }
  }

  /// The full checkpoint a delta's `xor` tensors were taken against.
  public struct DeltaBase: Codable, Equatable, Sendable {
    /// File name, in the same folder.
    public var file: String
    /// That file's footer SHA-256 (hex).
    public var checksum: String

    public init(file: String, checksum: String) {
      self.file = file
      self.checksum = checksum
    }
  }

  public var format = "swift-lora-dist checkpoint"
  public var kind: Kind
  public var created: String
  public var codeVersion: String
  public var adapter: LoRAConfig
  /// "alpha/r" or "alpha/sqrt(r)" (rsLoRA).
  public var scaleConvention: String
  public var modules: [Module]
  public var base: Base
  /// "f32", "bf16" or "f16": how the `lora` tensor is stored.
  public var precision: Tensor.ByteEncoding
  public var training: Training?
  public var schedule: Schedule?
  public var optimizer: Optimizer?
  public var rng: RNG?
  public var deltaBase: DeltaBase?

  public init(
    kind: Kind,
    created: String,
    codeVersion: String = CheckpointFormat.codeVersion,
    adapter: LoRAConfig,
    scaleConvention: String,
    modules: [Module],
    base: Base,
    precision: Tensor.ByteEncoding = .f32,
    training: Training? = nil,
    schedule: Schedule? = nil,
    optimizer: Optimizer? = nil,
    rng: RNG? = nil,
    deltaBase: DeltaBase? = nil
  ) {
    self.kind = kind
    self.created = created
    self.codeVersion = codeVersion
    self.adapter = adapter
    self.scaleConvention = scaleConvention
    self.modules = modules
    self.base = base
    self.precision = precision
    self.training = training
    self.schedule = schedule
    self.optimizer = optimizer
    self.rng = rng
    self.deltaBase = deltaBase
  }

  enum CodingKeys: String, CodingKey {
    case format, kind, created, adapter, modules, base, precision, training, schedule, optimizer, rng
    case codeVersion = "code_version"
    case scaleConvention = "scale_convention"
    case deltaBase = "delta_base"
  }

  public func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(format, forKey: .format)
    try c.encode(kind, forKey: .kind)
    try c.encode(created, forKey: .created)
    try c.encode(codeVersion, forKey: .codeVersion)
    try c.encode(adapter, forKey: .adapter)
    try c.encode(scaleConvention, forKey: .scaleConvention)
    try c.encode(modules, forKey: .modules)
    try c.encode(base, forKey: .base)
    try c.encode(precision, forKey: .precision)
    try c.encodeIfPresent(training, forKey: .training)
    try c.encodeIfPresent(schedule, forKey: .schedule)
    try c.encodeIfPresent(optimizer, forKey: .optimizer)
    try c.encodeIfPresent(rng, forKey: .rng)
    try c.encode(deltaBase, forKey: .deltaBase)  // null for a full checkpoint
  }
}
