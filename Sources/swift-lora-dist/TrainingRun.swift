import Foundation
import LoRACheckpoint
import LoRAComm
import LoRAFormats
import LoRAKernels
import LoRAModel
import LoRAServe
import LoRATraining

/// One `train` invocation, from resolved settings: checks everything that can be checked
/// before loading anything heavy, then loads, trains, and writes the adapter, the metrics
/// and the report.
struct TrainingRun {
  let settings: TrainConfiguration
  let model: String
  let data: String
  let output: URL
  let datasetOptions: DatasetOptions
  let lora: LoRAConfig
  let requestedSteps: Int?
  let epochs: Double?
  var options: TrainingOptions
  /// Batch size in tokens (job files' `tokens_per_batch`): sets the batch once the data's
  /// mean length is known.
  var tokensPerBatch: Int?

  init(_ s: TrainConfiguration) throws {
    settings = s
    guard let model = s.model else {
      throw ConfigError("no base model: pass --model or set 'model' in --config")
    }
    guard let data = s.data else {
      throw ConfigError("no training data: pass --data or set 'data' in --config")
    }
    guard let output = s.output else {
      throw ConfigError("no output folder: pass --output or set 'output' in --config")
    }
    self.model = model
    self.data = data
    self.output = URL(fileURLWithPath: output).standardizedFileURL
    guard let format = DataFormat(rawValue: s.format ?? "auto") else {
      throw ConfigError(
        "format '\(s.format ?? "")' is not one of \(DataFormat.allCases.map(\.rawValue).joined(separator: ", "))"
      )
    }
    datasetOptions = DatasetOptions(
      format: format, maxSequenceLength: s.maxSeqLen ?? TrainingSettings.Defaults.maxSeqLen,
      trainOnPrompt: s.trainOnPrompt ?? false,
      addEOS: s.addEos ?? true, skipBadLines: s.skipBadLines ?? false, pack: s.pack ?? false)
    try datasetOptions.validate()
    lora = s.loraConfig
    try lora.validate()
    guard let schedule = LearningRateSchedule.Kind(rawValue: s.schedule ?? "cosine") else {
      throw ConfigError("schedule '\(s.schedule ?? "")' is not one of constant, linear, cosine")
    }
    if let fraction = s.validationFraction, !(fraction >= 0 && fraction < 1) {
      throw ConfigError("validation fraction must be in [0, 1), got \(fraction)")
    }
    if s.validationFraction != nil && s.validationData != nil {
      throw ConfigError("give either validation data or a validation fraction, not both")
    }
    if let epochs = s.epochs, !(epochs.isFinite && epochs > 0) {
      throw ConfigError("epochs must be positive, got \(epochs)")
    }
    if let threads = s.threads, threads < 1 {
      throw ConfigError("threads must be at least 1, got \(threads)")
    }
    requestedSteps = s.steps
    epochs = s.epochs
    options = TrainingOptions(
      steps: s.steps ?? TrainingSettings.Defaults.steps,
      batchSize: s.batchSize ?? TrainingSettings.Defaults.batchSize,
      microBatch: s.microBatch
        ?? min(TrainingSettings.Defaults.microBatch, s.batchSize ?? TrainingSettings.Defaults.batchSize),
      learningRate: s.lr ?? TrainingSettings.Defaults.lr, schedule: schedule, warmupSteps: s.warmup ?? 0,
      adamW: .init(
        beta1: s.beta1 ?? 0.9, beta2: s.beta2 ?? 0.999, eps: s.eps ?? 1e-8,
        weightDecay: s.weightDecay ?? 0.01),
      maxGradientNorm: s.maxGradNorm ?? 1, seed: s.seed ?? 0, evaluateEvery: s.evalEvery ?? 0,
      checkpointActivations: s.checkpointActivations ?? false)
    try options.validate()
    let names = ["adapter_config.json", "adapter_model.safetensors", "metrics.jsonl"]
    if let every = s.checkpointEvery, every < 0 {
      throw ConfigError("checkpoint-every must be 0 or more, got \(every)")
    }
    if let keep = s.keep, keep < 1 { throw ConfigError("keep must be at least 1, got \(keep)") }
    if let full = s.fullEvery, full < 1 { throw ConfigError("full-every must be at least 1, got \(full)") }
    if s.resume != nil && s.overwrite == true {
      throw ConfigError(
        "--resume continues the run in its output folder; it cannot be combined with --overwrite")
    }
    if (s.resume == nil || s.resume == "auto") && !(s.overwrite ?? false)
      && !(s.resume == "auto"
        && !CheckpointStore.list(
          URL(fileURLWithPath: output).standardizedFileURL.appendingPathComponent("checkpoints")
        ).isEmpty),
      names.contains(where: {
        FileManager.default.fileExists(atPath: self.output.appendingPathComponent($0).path)
      })
    {
      throw ConfigError(
        "\(self.output.path) already holds a run; choose another --output or pass --overwrite")
    }
  }

  /// A model loaded once and shared by thread-ranks (`--local-ranks`).
  struct LoadedModel: @unchecked Sendable {
    var files: ModelFiles
    var tokenizer: Tokenizer
    var model: LlamaModel
    var origin: LlamaModel.Origin

    /// Loads `path`; with a multi-rank `communicator`, the ranks of each node share one copy
    /// of the converted weights (the node's first rank fills it).
    init(path: String, communicator: (any Communicator)? = nil) throws {
      files = try ModelFiles.open(path)
      tokenizer = try Tokenizer.load(files)
      (model, origin) = try Self.weights(files, communicator: communicator)
    }

    /// The model alone, without its tokenizer (`bench` trains on random ids, so it runs on
    /// weights that come without one), shared per node as above.
    static func weights(_ files: ModelFiles, communicator: (any Communicator)? = nil) throws -> (
      model: LlamaModel, origin: LlamaModel.Origin
    ) {
      var storage: WeightStorage?
      if let communicator, communicator.size > 1 {
        let shared = SharedBox()
        storage = WeightStorage(
          allocate: { count in
            let buffer = try communicator.nodeSharedBuffer(count: count)
            shared.buffer = buffer
            return (buffer.tensor, buffer.filler)
          },
          ready: { try shared.buffer?.ready() })
      }
      return try LlamaModel.load(files, storage: storage)
    }
  }

  /// Runs on one rank of `comm`: every rank loads, checks that all agree, and trains its
  /// slice of each batch; rank 0 alone prints, writes metrics, checkpoints, the adapter and
  /// the report.
  mutating func execute(
    progress: Progress, communicator comm: any Communicator = LocalCommunicator.single(),
    loaded preloaded: LoadedModel? = nil, stop: StopRequest = StopRequest()
  ) throws -> Trainer.Ending {
    if let threads = settings.threads { BLAS.threads = threads }
    let leader = comm.rank == 0
    let started = Date()
    let loadedModel = try preloaded ?? LoadedModel(path: model, communicator: comm)
    let (files, tokenizer, llama, origin) = (
      loadedModel.files, loadedModel.tokenizer, loadedModel.model, loadedModel.origin
    )
    let (loaded, train, validation, validationStats) = try loadData(tokenizer: tokenizer, ranks: comm.size)
    let adapter = try LoRAAdapter(config: lora, model: llama.config, seed: options.seed)
    let padID = Int32(tokenizer.padID ?? tokenizer.eosID ?? 0)
    let trainer = try Trainer(
      model: llama, adapter: adapter, train: train, validation: validation, options: options, padID: padID,
      communicator: comm, stopRequest: stop)
    trainer.checkEvery = settings.checkEvery ?? 0
    let fingerprint = BaseFingerprint.of(llama, files: files)
    // Every rank must train the same thing: same settings, same data, same base.
    try comm.checkAgreement([
      ("settings", try settingsHash()),
      ("training data", try dataHash()),
      ("base model", fingerprint),
    ])
    var resumedFrom: String?
    if let resume = resumeSource {
      if leader {
        let readStarted = Date()
        let (reader, skipped) = try CheckpointStore.newestValid(resume)
        for (file, reason) in skipped {
          FileHandle.standardError.write(Data("warning: skipping \(file): \(reason)\n".utf8))
        }
        try trainer.resume(from: reader, fingerprint: fingerprint, force: settings.force ?? false)
        resumedFrom =
          "\(reader.path) (update \(trainer.step); read, verified and restored in "
          + "\(format(Date().timeIntervalSince(readStarted) * 1000, 1)) ms)"
      }
      try trainer.synchronizeState(from: 0)
      // Resumed at its last update with the outputs in place: a finished run, left as it is.
      var complete = [leader && trainer.step >= options.steps && AdapterOutput.isComplete(output) ? 1.0 : 0]
      if comm.size > 1 { try comm.allreduce(&complete, .max) }
      if complete[0] > 0 {
        if leader && progress.jsonLines {
          progress.emit([
            "event": "skipped", "reason": "finished", "step": trainer.step, "output": output.path,
          ])
        } else if leader {
          progress.say(
            "already finished: update \(trainer.step) of \(options.steps) in \(resumedFrom ?? "-"); "
              + "\(output.path) holds the adapter and report (nothing to train, nothing rewritten)")
        }
        return .finished
      }
    }
    let checkpoints = try checkpointing(
      base: .init(fingerprint: fingerprint, source: model, config: llama.config))

    let stats = loaded.stats
    let intro =
      "model \(model) (\(origin.format), \(grouped(llama.config.parameterCount)) parameters, loaded in "
      + "\(format(origin.loadSeconds, 2)) s)\n"
      + "data \(data): \(stats.examples) examples, \(grouped(stats.tokens)) tokens, \(grouped(stats.trainedTokens)) trained; "
      + "\(stats.truncated) truncated to \(datasetOptions.maxSequenceLength) tokens, \(stats.skippedLines) bad lines skipped\n"
      + "split: \(train.count) training, \(validation.count) validation examples\n"
      + "adapter: r \(lora.r), alpha \(lora.loraAlpha), \(adapter.modules.count) modules, "
      + "\(grouped(adapter.parameterCount)) trainable parameters; \(options.steps) updates of \(options.batchSize) "
      + "sequences, \(BLAS.threads) BLAS thread(s) (\(BLAS.coreName))"
      + (comm.size > 1
        ? "\n\(comm.size) ranks (\(comm.backend)), \(options.batchSize / comm.size) sequences each per update; "
          + "gradients all-reduced per update: \(formatBytes(trainer.allreduceBytes)) in one buffer" : "")
      + (resumedFrom.map { "\nresuming from \($0)" } ?? "")
    if leader {
      if progress.jsonLines {
        progress.emit(["event": "start", "message": intro])
      } else {
        progress.say(intro)
      }
    }

    let out = try AdapterOutput(
      folder: output, totalSteps: options.steps, leader: leader,
      start: resumedFrom != nil ? .resumed(step: trainer.step) : .fresh)
    if !validation.isEmpty && trainer.step == 0 {
      let (initialLoss, _) = try trainer.validationLoss()
      out.validations.append((0, initialLoss))
      if leader { progress.show(.validation(step: 0, loss: initialLoss, tokens: 0)) }
    }
    var lastCheckpoint: CheckpointStore.Saved?
    let ending = try trainer.run(checkpoints: leader ? checkpoints : nil) { event in
      guard leader else { return }
      progress.show(event)
      switch event {
      case .step(let m): out.step(m)
      case .validation(let step, let loss, let tokens): out.validation(step: step, loss: loss, tokens: tokens)
      case .checkpoint(let saved):
        lastCheckpoint = saved
        out.checkpoint(saved)
      }
    }
    let (steps, validations) = (out.steps, out.validations)
    // Every rank's memory, for the summary: peak RSS and the proportional share (PSS).
    let memory = try ResidentMemory.perRank(comm)
    guard leader else { return ending }
    progress.finish()
    if case .stopped(let step) = ending {
      let message =
        "stopped on request after update \(step) of \(options.steps); checkpoint "
        + "\(lastCheckpoint?.path ?? "-"); continue with the same command and --resume \(output.path)"
      if progress.jsonLines {
        progress.emit(["event": "stopped", "step": step, "checkpoint": lastCheckpoint?.path ?? NSNull()])
      } else {
        progress.say(message)
      }
      return ending
    }

    let elapsed = Date().timeIntervalSince(started)
    let tokens = steps.reduce(0) { $0 + $1.tokens }
    let trainSeconds = steps.reduce(0) { $0 + $1.seconds }
    var summary: [(String, String)] = [
      ("base model", "\(model) (\(origin.format))"),
      ("adapter", "\(output.path) (PEFT: adapter_config.json + adapter_model.safetensors)"),
      ("updates", "\(steps.count) of \(options.batchSize) sequences"),
      (
        "checkpoint",
        lastCheckpoint.map {
          "\($0.path) (\(formatBytes($0.fileBytes)), \(format(Double($0.rawBytes) / Double(max($0.fileBytes, 1)), 2))× smaller than raw)"
        } ?? "-"
      ),
      ("final training loss", steps.last.map { format($0.loss, 4) } ?? "-"),
      (
        "throughput",
        "\(format(Double(tokens) / max(trainSeconds, 1e-9), 1)) tokens/s over \(grouped(tokens)) tokens"
      ),
      ("wall time", duration(elapsed)),
      (
        "ranks",
        comm.size == 1
          ? "1"
          : "\(comm.size) (\(comm.backend)); gradients all-reduced per update: \(formatBytes(trainer.allreduceBytes)), "
            + "\(format(100 * trainer.allreduceSeconds / max(trainSeconds, 1e-9), 2))% of the training time on rank 0"
      ),
      (
        "memory",
        comm.size == 1
          ? "peak resident \(formatBytes(ResidentMemory.peakBytes()))"
          : (0..<comm.size).map {
            "rank \($0): peak resident \(formatBytes(memory[$0].peak)), proportional \(formatBytes(memory[$0].proportional))"
          }.joined(separator: "; ")
            + " (the base is shared by the ranks of a node; proportional counts each shared page once)"
      ),
      (
        "training data",
        "\(data): \(stats.examples) examples, \(stats.truncated) truncated, \(stats.skippedLines) skipped"
      ),
    ]
    if let first = validations.first, let last = validations.last {
      summary.insert(
        (
          "validation loss",
          "\(format(first.loss, 4)) → \(format(last.loss, 4)) (perplexity \(format(exp(last.loss), 2)))"
        ), at: 4)
    }
    if let validationStats {
      summary.append(
        ("validation data", "\(settings.validationData ?? ""): \(validationStats.examples) examples"))
    }
    try out.finish(
      adapter: adapter, baseModel: model, title: "LoRA training: \(output.lastPathComponent)",
      summary: summary,
      configuration: try configurationRows(),
      signature: RouteSignature.of(trainer.trainingExamples, model: llama, baseFingerprint: fingerprint))

    let closing =
      summary.map { "\($0.0): \($0.1)" }.joined(separator: "\n") + "\nreport: \(output.path)/report.html"
    if progress.jsonLines {
      progress.emit([
        "event": "finished", "adapter": output.path, "output": output.path,
        "report": output.path + "/report.html",
        "final_loss": steps.last?.loss ?? Double.nan, "validation_loss": validations.last?.loss ?? Double.nan,
      ])
    } else {
      progress.say(closing)
    }
    return ending
  }

  /// The training and validation examples (a validation file, a held-out fraction, or
  /// none); with `epochs` and no `steps`, sets the number of updates.
  mutating func loadData(tokenizer: Tokenizer, ranks: Int = 1) throws -> (
    loaded: Dataset, train: [Example], validation: [Example], validationStats: DatasetStats?
  ) {
    let loaded = try DatasetLoader.load(path: data, tokenizer: tokenizer, options: datasetOptions)
    var train = loaded.examples
    var validation: [Example] = []
    var validationStats: DatasetStats?
    if let path = settings.validationData {
      let v = try DatasetLoader.load(path: path, tokenizer: tokenizer, options: datasetOptions)
      validation = v.examples
      validationStats = v.stats
    } else if let fraction = settings.validationFraction, fraction > 0 {
      (train, validation) = try Dataset.split(loaded, validationFraction: fraction, seed: options.seed)
    }
    if let tokens = tokensPerBatch {
      // A batch of about `tokens` tokens: whole micro-batches on every rank.
      let mean = Double(train.reduce(0) { $0 + $1.tokens.count }) / Double(max(train.count, 1))
      let unit = options.microBatch * ranks
      options.batchSize = max(1, Int((Double(tokens) / max(mean, 1) / Double(unit)).rounded())) * unit
      try options.validate(ranks: ranks)
    }
    if let epochs, requestedSteps == nil {
      options.steps = max(1, Int((epochs * Double(train.count) / Double(options.batchSize)).rounded(.up)))
    }
    return (loaded, train, validation, validationStats)
  }

  /// Where `--resume` points: `auto` means the output folder when it holds checkpoints.
  var resumeSource: String? {
    guard let resume = settings.resume else { return nil }
    guard resume == "auto" else { return resume }
    return CheckpointStore.list(output.appendingPathComponent("checkpoints")).isEmpty ? nil : output.path
  }

  /// SHA-256 of the settings that shape training (adapter, optimizer, schedule, batch, data
  /// processing), as sorted-key JSON; paths are left out (the data and base hashes cover
  /// what they point to, and they may differ between hosts).
  func settingsHash() throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    var bytes = [UInt8]()
    bytes += try encoder.encode(lora)
    bytes += try encoder.encode(options)
    bytes += try encoder.encode(datasetOptions)
    return BaseFingerprint.sha256(bytes)
  }

  /// SHA-256 of the training and validation files' bytes.
  func dataHash() throws -> String {
    var bytes: [UInt8] = []
    for path in [data] + (settings.validationData.map { [$0] } ?? []) {
      guard let contents = FileManager.default.contents(atPath: path) else {
        throw ConfigError("\(path): cannot read the data file")
      }
      bytes += Array(BaseFingerprint.sha256(Array(contents)).utf8)
    }
    return BaseFingerprint.sha256(bytes)
  }

  /// Where and how often this run writes checkpoints (`checkpoints/` in the output folder).
  func checkpointing(base: CheckpointHeader.Base) throws -> Trainer.Checkpointing {
    Trainer.Checkpointing(
      store: try CheckpointStore(
        folder: output.appendingPathComponent("checkpoints"), keep: settings.keep ?? 3,
        fullEvery: settings.fullEvery ?? 4),
      every: settings.checkpointEvery ?? 50, base: base)
  }

  /// Every resolved setting, for the report and training_config.json.
  func configurationRows() throws -> [(String, String)] {
    let lora = try JSONSerialization.jsonObject(with: JSONEncoder().encode(self.lora)) as! [String: Any]
    let training = try JSONSerialization.jsonObject(with: JSONEncoder().encode(options)) as! [String: Any]
    let dataset =
      try JSONSerialization.jsonObject(with: JSONEncoder().encode(datasetOptions)) as! [String: Any]
    var rows: [(String, String)] = [("model", model), ("data", data)]
    for (prefix, dictionary) in [("lora", lora), ("training", training), ("data", dataset)] {
      for key in dictionary.keys.sorted() { rows.append(("\(prefix).\(key)", "\(dictionary[key]!)")) }
    }
    return rows
  }
}

/// Holds the node-shared buffer between its allocation and the barrier after filling it.
private final class SharedBox: @unchecked Sendable {
  var buffer: NodeSharedBuffer?
}
