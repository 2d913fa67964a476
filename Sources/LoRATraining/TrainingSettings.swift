import LoRAModel

/// The training settings of one adapter, as a user writes them: data, data processing, the
/// LoRA configuration, optimizer, schedule, batch, validation and checkpoints, with the
/// snake_case keys of `train`'s YAML file and of a job file's adapter entries
/// (docs/training.md, docs/job-file.md). Unset values are nil and take the documented
/// defaults (``Defaults``).
///
/// `train`'s configuration adds its process-wide keys (model, threads, resume, …) and a job
/// file's adapter settings add `tokens_per_batch`; both encode flat, with these keys.
public struct TrainingSettings: Codable, Equatable, Sendable {
  public var data: String?
  public var validationData: String?
  public var validationFraction: Double?
  public var format: String?
  public var maxSeqLen: Int?
  public var trainOnPrompt: Bool?
  public var pack: Bool?
  public var skipBadLines: Bool?
  public var addEos: Bool?
  public var chatFormat: String?
  @ListOrOne public var targets: [String]?
  @RankOrAuto public var rank: Int?
  public var rankLadder: [Int]?
  public var rankTolerance: Double?
  public var alpha: Double?
  public var dropout: Double?
  public var rslora: Bool?
  @ListOrOne public var layers: [Int]?
  public var rankPattern: [String: Int]?
  public var alphaPattern: [String: Double]?
  public var initWeights: String?
  public var initAdapter: String?
  /// DoRA (PEFT's `use_dora`): a trained magnitude per output row of each adapted linear.
  public var useDora: Bool?
  public var promptTokens: Int?
  public var prefixTokens: Int?
  public var prefixProjection: Int?
  public var lr: Double?
  public var schedule: String?
  public var warmup: Int?
  public var steps: Int?
  public var epochs: Double?
  public var batchSize: Int?
  public var microBatch: Int?
  public var balance: String?
  /// Padding-free passes: a pass's sequences packed into shared rows, each attending only to
  /// itself (`Batch.init(rows:length:padID:)`).
  public var paddingFree: Bool?
  public var weightDecay: Double?
  /// LoRA+: B's learning rate is this many times A's (PEFT's `loraplus_lr_ratio`).
  public var loraplusLRRatio: Double?
  /// What is trained: "sft" (next-token loss) or "dpo" (preference pairs).
  public var objective: String?
  /// DPO's β and label smoothing.
  public var beta: Double?
  public var labelSmoothing: Double?
  /// DPO: score the reference once for every training pair (nil: when the run covers two
  /// epochs or more; `TrainingOptions.precomputeReference`).
  public var precomputeReference: Bool?
  public var beta1: Double?
  public var beta2: Double?
  public var eps: Double?
  public var maxGradNorm: Double?
  public var seed: UInt64?
  public var evalEvery: Int?
  public var checkpointEvery: Int?
  public var keep: Int?
  public var fullEvery: Int?
  public var output: String?

  public init() {}

  /// The keys, in the order the docs list them.
  public enum CodingKeys: String, CodingKey, CaseIterable {
    case data
    case validationData = "validation_data"
    case validationFraction = "validation_fraction"
    case format
    case maxSeqLen = "max_seq_len"
    case trainOnPrompt = "train_on_prompt"
    case pack
    case skipBadLines = "skip_bad_lines"
    case addEos = "add_eos"
    case chatFormat = "chat_format"
    case targets, rank
    case rankLadder = "rank_ladder"
    case rankTolerance = "rank_tolerance"
    case alpha, dropout, rslora, layers
    case rankPattern = "rank_pattern"
    case alphaPattern = "alpha_pattern"
    case initWeights = "init_weights"
    case initAdapter = "init_adapter"
    case useDora = "use_dora"
    case promptTokens = "prompt_tokens"
    case prefixTokens = "prefix_tokens"
    case prefixProjection = "prefix_projection"
    case lr, schedule, warmup, steps, epochs
    case batchSize = "batch_size"
    case microBatch = "micro_batch"
    case balance
    case paddingFree = "padding_free"
    case weightDecay = "weight_decay"
    case loraplusLRRatio = "loraplus_lr_ratio"
    case objective, beta
    case labelSmoothing = "label_smoothing"
    case precomputeReference = "precompute_reference"
    case beta1, beta2, eps
    case maxGradNorm = "max_grad_norm"
    case seed
    case evalEvery = "eval_every"
    case checkpointEvery = "checkpoint_every"
    case keep
    case fullEvery = "full_every"
    case output
  }

  /// The keys, in the order the docs list them.
  public static let keys: [String] = CodingKeys.allCases.map(\.stringValue)

  /// The documented defaults of unset values (docs/training.md): every default of a
  /// training setting lives here.
  public enum Defaults {
    public static let format = DataFormat.auto
    public static let maxSeqLen = 512
    public static let trainOnPrompt = false
    public static let pack = false
    public static let skipBadLines = false
    public static let addEos = true
    public static let targets = ["q_proj", "v_proj"]
    public static let rank = 8
    /// The ladder of `rank: auto` (`train --rank auto`).
    public static let rankLadder = [2, 4, 8, 16, 32]
    /// The least relative improvement of the validation loss that earns the next rung.
    public static let rankTolerance = 0.01
    public static let alpha = 16.0
    public static let dropout = 0.0
    public static let rslora = false
    public static let initWeights = "default"
    public static let useDora = false
    public static let lr = 2e-4
    public static let schedule = LearningRateSchedule.Kind.cosine
    public static let warmup = 0
    public static let steps = 100
    public static let batchSize = 8
    /// The micro-batch is this or the batch size, whichever is smaller.
    public static let microBatch = 4
    /// Ranks get equal work (tokens, attention counted), not equal sequence counts.
    public static let balance = BatchBalance.tokens
    /// Padding-free (SFT and DPO alike) unless the adapter has prompt or prefix tokens.
    public static func paddingFree(virtualTokens: Bool) -> Bool { !virtualTokens }
    public static let weightDecay = 0.01
    /// 1: plain LoRA, A and B at one learning rate.
    public static let loraplusLRRatio = 1.0
    public static let objective = "sft"
    /// TRL's defaults.
    public static let beta = 0.1
    public static let labelSmoothing = 0.0
    public static let beta1 = 0.9
    public static let beta2 = 0.999
    public static let eps = 1e-8
    public static let maxGradNorm = 1.0
    public static let seed: UInt64 = 0
    /// 0: validate after the last update only.
    public static let evalEvery = 0
    /// Every 50 updates and after the last (0 would mean after the last only).
    public static let checkpointEvery = 50
    public static let keep = 3
    public static let fullEvery = 4
  }

  /// The ranks `rank: auto` climbs: `rank_ladder`, or the default ladder when only
  /// `rank: auto` is given; nil for one rank.
  public var ladder: [Int]? { rankLadder ?? ($rank ? Defaults.rankLadder : nil) }

  /// The keys of settings that `other`, laid over them, replaces without giving: its own
  /// `rank_ladder` (rank: auto) replaces a number, and its own number a ladder.
  public func keysReplaced(by other: TrainingSettings) -> [String] {
    var keys: [String] = []
    if other.rankLadder != nil && other.rank == nil && !other.$rank {
      keys.append(CodingKeys.rank.stringValue)
    }
    if other.rank != nil && other.rankLadder == nil { keys.append(CodingKeys.rankLadder.stringValue) }
    return keys
  }

  /// The LoRA configuration these settings describe (the defaults where unset); `targets:
  /// none` leaves only the virtual tokens.
  public var loraConfig: LoRAConfig {
    LoRAConfig(
      r: ladder?.first ?? rank ?? Defaults.rank, loraAlpha: alpha ?? Defaults.alpha,
      loraDropout: dropout ?? Defaults.dropout,
      targetModules: targets == ["none"] ? [] : targets ?? Defaults.targets, layersToTransform: layers,
      useRslora: rslora ?? Defaults.rslora,
      rankPattern: rankPattern ?? [:], alphaPattern: alphaPattern ?? [:],
      initialization: initWeights ?? Defaults.initWeights, virtualTokens: virtualTokens,
      useDora: useDora ?? Defaults.useDora)
  }

  /// Prompt tuning (`prompt_tokens`) or prefix tuning (`prefix_tokens`, `prefix_projection`).
  public var virtualTokens: VirtualTokenConfig? {
    if let n = promptTokens { return VirtualTokenConfig(kind: .prompt, tokens: n) }
    if let n = prefixTokens {
      return VirtualTokenConfig(kind: .prefix, tokens: n, projection: prefixProjection)
    }
    return nil
  }
}
