import Foundation
import LoRACheckpoint
import LoRACoordinator
import LoRAFormats
import LoRAModel
import LoRATraining

/// One adapter's run, resolved and checked before anything heavy is loaded: data, output,
/// data processing, LoRA configuration, training options, checkpoint cadence and resume.
/// `train` makes one from its flags and file; `train --jobs` one per adapter of the job.
public struct TrainingPlan: Sendable {
  /// The adapter's name in a job (nil for `train`).
  public var name: String?
  public var model: String
  public var data: String
  public var validationData: String?
  /// An adapter whose A and B the training starts from (nil: drawn from the seed).
  public var initAdapter: String?
  /// The ranks `rank: auto` climbs (nil: one rank), and the least relative improvement of
  /// the validation loss per rung that earns the next.
  public var rankLadder: [Int]?
  public var rankTolerance: Double = TrainingSettings.Defaults.rankTolerance
  public var validationFraction: Double?
  public var output: URL
  public var dataset: DatasetOptions
  public var lora: LoRAConfig
  public var options: TrainingOptions
  /// `steps` as given (nil: from `epochs`, or the default).
  public var requestedSteps: Int?
  public var epochs: Double?
  /// Batch size in tokens (job files' `tokens_per_batch`): sets the batch once the data's
  /// mean length is known.
  public var tokensPerBatch: Int?
  /// Checkpoints: every this many updates (0: after the last only), how many to keep, and
  /// every how many a full one (the rest are deltas).
  public var checkpointEvery: Int
  public var keep: Int
  public var fullEvery: Int
  /// `--resume`: nil, "auto" (the output folder when it holds checkpoints), or a path.
  public var resume: String?
  /// Resume from a checkpoint of another base fingerprint.
  public var force: Bool
  /// How the base is held (resolved when it is loaded).
  public var basePrecision: BasePrecision
  /// How attention's products run (resolved when the base is loaded).
  public var attentionPrecision: AttentionPrecision
  /// The sweep this adapter belongs to, with its successive halving.
  public var sweep: SweepMember?
  /// A tree node's ancestors, root first (their names and output folders): it trains over
  /// their ΔW, frozen. Empty for a root.
  public var chain: [AdapterChainRecord.Link] = []

  /// Checks `settings` (unset values take their defaults; a value out of range throws its
  /// `SettingsError`) and the output folder: an existing run there is refused unless
  /// `overwrite`, or resumed with `resume`.
  public init(
    _ s: TrainingSettings, model: String?, name: String? = nil, resume: String? = nil,
    overwrite: Bool = false,
    force: Bool = false, checkpointActivations: Bool = false, tokensPerBatch: Int? = nil,
    sweep: SweepMember? = nil, basePrecision: BasePrecision = .auto,
    attentionPrecision: AttentionPrecision = .auto
  ) throws {
    guard let model else { throw RunError("no base model: pass --model or set 'model' in --config") }
    guard let data = s.data else { throw RunError("no training data: pass --data or set 'data' in --config") }
    guard let output = s.output else {
      throw RunError("no output folder: pass --output or set 'output' in --config")
    }
    self.name = name
    self.model = model
    self.data = data
    self.validationData = s.validationData
    self.initAdapter = s.initAdapter
    self.validationFraction = s.validationFraction
    self.output = URL(fileURLWithPath: output).standardizedFileURL
    self.tokensPerBatch = tokensPerBatch
    self.sweep = sweep
    self.resume = resume
    self.force = force
    self.basePrecision = basePrecision
    self.attentionPrecision = attentionPrecision
    // The LoRA configuration's own checks first (they name PEFT's fields), then every
    // setting's range (one table: `TrainingSettings.validate`, a `SettingsError`).
    lora = s.loraConfig
    try lora.validate()
    try s.validate()
    typealias D = TrainingSettings.Defaults
    dataset = DatasetOptions(
      format: s.format.flatMap(DataFormat.init(rawValue:)) ?? D.format,
      maxSequenceLength: s.maxSeqLen ?? D.maxSeqLen,
      trainOnPrompt: s.trainOnPrompt ?? D.trainOnPrompt, addEOS: s.addEos ?? D.addEos,
      skipBadLines: s.skipBadLines ?? D.skipBadLines, pack: s.pack ?? D.pack,
      chatFormat: s.chatFormat.flatMap(ChatFormat.init(rawValue:)))
    try dataset.validate()
    if s.validationFraction != nil && s.validationData != nil {
      throw RunError("give either validation data or a validation fraction, not both")
    }
    if let ladder = s.ladder {
      guard s.rank == nil else { throw RunError("give either rank or rank_ladder (rank: auto), not both") }
      guard s.validationData != nil || (s.validationFraction ?? 0) > 0 else {
        throw RunError(
          "rank: auto decides by the validation loss: give validation data or a fraction")
      }
      if let resume, resume != "auto",
        URL(fileURLWithPath: resume).standardizedFileURL.path != self.output.path
      {
        throw RunError(
          "rank: auto resumes from its own output folder (each rung's checkpoints): pass --resume auto, not \(resume)"
        )
      }
      guard s.initAdapter == nil && s.rankPattern == nil else {
        throw RunError("rank: auto starts from a fresh adapter with one rank for every module")
      }
      rankLadder = ladder
      rankTolerance = s.rankTolerance ?? TrainingSettings.Defaults.rankTolerance
    }
    if (s.objective ?? D.objective) != "dpo" && (s.beta != nil || s.labelSmoothing != nil) {
      throw RunError("beta and label_smoothing apply to objective: dpo; the objective is sft")
    }
    if (s.objective ?? D.objective) != "dpo" && s.precomputeReference != nil {
      throw RunError(
        "precompute_reference applies to objective: dpo (its reference model); the objective is sft")
    }
    requestedSteps = s.steps
    epochs = s.epochs
    let batch = s.batchSize ?? D.batchSize
    options = TrainingOptions(
      steps: s.steps ?? D.steps, batchSize: batch, microBatch: s.microBatch ?? min(D.microBatch, batch),
      learningRate: s.lr ?? D.lr,
      schedule: s.schedule.flatMap(LearningRateSchedule.Kind.init(rawValue:)) ?? D.schedule,
      warmupSteps: s.warmup ?? D.warmup,
      adamW: .init(
        beta1: s.beta1 ?? D.beta1, beta2: s.beta2 ?? D.beta2, eps: s.eps ?? D.eps,
        weightDecay: s.weightDecay ?? D.weightDecay),
      maxGradientNorm: s.maxGradNorm ?? D.maxGradNorm, seed: s.seed ?? D.seed,
      evaluateEvery: s.evalEvery ?? D.evalEvery, checkpointActivations: checkpointActivations,
      loraPlusRatio: s.loraplusLRRatio ?? D.loraplusLRRatio,
      dpo: (s.objective ?? D.objective) == "dpo"
        ? DPOLoss(beta: s.beta ?? D.beta, labelSmoothing: s.labelSmoothing ?? D.labelSmoothing) : nil,
      balance: s.balance.flatMap(BatchBalance.init(rawValue:)) ?? D.balance,
      paddingFree: s.paddingFree
        ?? D.paddingFree(virtualTokens: (s.promptTokens ?? 0) + (s.prefixTokens ?? 0) > 0),
      precomputeReference: s.precomputeReference)
    try options.validate()
    checkpointEvery = s.checkpointEvery ?? D.checkpointEvery
    keep = s.keep ?? D.keep
    fullEvery = s.fullEvery ?? D.fullEvery
    if resume != nil && overwrite {
      throw RunError(
        "--resume continues the run in its output folder; it cannot be combined with --overwrite")
    }
    // A finished run's adapter is never overwritten unasked. Without --resume, its metrics
    // count as a run too; with --resume auto they do not: a run stopped before its first
    // checkpoint left only them, and a restart (launch/run --restarts) begins it again.
    let names =
      ["adapter_config.json", "adapter_model.safetensors"] + (resume == "auto" ? [] : ["metrics.jsonl"])
    let resumesHere = resume != nil && hasCheckpoints
    if (resume == nil || resume == "auto") && !overwrite && !resumesHere,
      names.contains(where: {
        FileManager.default.fileExists(atPath: self.output.appendingPathComponent($0).path)
      })
    {
      throw RunError("\(self.output.path) already holds a run; choose another --output or pass --overwrite")
    }
  }

  /// `output/checkpoints`.
  public var checkpointFolder: URL { output.appendingPathComponent("checkpoints") }

  /// Whether the output folder holds checkpoints to resume from (with `rank: auto`, any
  /// rung's).
  public var hasCheckpoints: Bool {
    guard let rankLadder else { return !CheckpointStore.list(checkpointFolder).isEmpty }
    return rankLadder.contains {
      !CheckpointStore.list(output.appendingPathComponent("rank-\($0)/checkpoints")).isEmpty
    }
  }

  /// Where `--resume` points: `auto` means the output folder when it holds checkpoints.
  public var resumeSource: String? {
    guard let resume else { return nil }
    guard resume == "auto" else { return resume }
    return CheckpointStore.list(checkpointFolder).isEmpty ? nil : output.path
  }

  /// Where and how often this run writes checkpoints (`checkpoints/` in the output folder).
  public func checkpointing(base: CheckpointHeader.Base) throws -> CheckpointCadence {
    CheckpointCadence(
      store: try CheckpointStore(folder: checkpointFolder, keep: keep, fullEvery: fullEvery),
      every: checkpointEvery, base: base)
  }

  /// Every resolved setting, for the report and training_config.json.
  public func configurationRows() throws -> [(String, String)] {
    func object<T: Encodable>(_ value: T) throws -> [String: Any] {
      try JSONSerialization.jsonObject(with: JSONEncoder().encode(value)) as? [String: Any] ?? [:]
    }
    var rows: [(String, String)] = [("model", model), ("data", data)]
    for (prefix, dictionary) in [
      ("lora", try object(lora)), ("training", try object(options)), ("data", try object(dataset)),
    ] {
      for key in dictionary.keys.sorted() { rows.append(("\(prefix).\(key)", "\(dictionary[key]!)")) }
    }
    return rows
  }
}
