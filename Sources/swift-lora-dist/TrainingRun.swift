import Foundation
import LoRAFormats
import LoRAKernels
import LoRAModel
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
      format: format, maxSequenceLength: s.maxSeqLen ?? 512, trainOnPrompt: s.trainOnPrompt ?? false,
      addEOS: s.addEos ?? true, skipBadLines: s.skipBadLines ?? false, pack: s.pack ?? false)
    try datasetOptions.validate()
    lora = LoRAConfig(
      r: s.rank ?? 8, loraAlpha: s.alpha ?? 16, loraDropout: s.dropout ?? 0,
      targetModules: s.targets ?? ["q_proj", "v_proj"],
      layersToTransform: s.layers, useRslora: s.rslora ?? false, rankPattern: s.rankPattern ?? [:],
      alphaPattern: s.alphaPattern ?? [:], initialization: s.initWeights ?? "default")
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
      steps: s.steps ?? 100, batchSize: s.batchSize ?? 8,
      microBatch: s.microBatch ?? min(4, s.batchSize ?? 8),
      learningRate: s.lr ?? 2e-4, schedule: schedule, warmupSteps: s.warmup ?? 0,
      adamW: .init(
        beta1: s.beta1 ?? 0.9, beta2: s.beta2 ?? 0.999, eps: s.eps ?? 1e-8,
        weightDecay: s.weightDecay ?? 0.01),
      maxGradientNorm: s.maxGradNorm ?? 1, seed: s.seed ?? 0, evaluateEvery: s.evalEvery ?? 0,
      checkpointActivations: s.checkpointActivations ?? false)
    try options.validate()
    let names = ["adapter_config.json", "adapter_model.safetensors", "metrics.jsonl"]
    if !(s.overwrite ?? false),
      names.contains(where: {
        FileManager.default.fileExists(atPath: self.output.appendingPathComponent($0).path)
      })
    {
      throw ConfigError(
        "\(self.output.path) already holds a run; choose another --output or pass --overwrite")
    }
  }

  mutating func execute(progress: Progress) throws {
    if let threads = settings.threads { BLAS.threads = threads }
    let started = Date()
    let files = try ModelFiles.open(model)
    let tokenizer = try Tokenizer.load(files)
    let (llama, origin) = try LlamaModel.load(files)
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
    if let epochs, requestedSteps == nil {
      options.steps = max(1, Int((epochs * Double(train.count) / Double(options.batchSize)).rounded(.up)))
    }
    let adapter = try LoRAAdapter(config: lora, model: llama.config, seed: options.seed)
    let padID = Int32(tokenizer.padID ?? tokenizer.eosID ?? 0)
    let trainer = try Trainer(
      model: llama, adapter: adapter, train: train, validation: validation, options: options, padID: padID)

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
    if progress.jsonLines {
      progress.emit(["event": "start", "message": intro])
    } else {
      print(intro)
    }

    try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
    let metricsURL = output.appendingPathComponent("metrics.jsonl")
    FileManager.default.createFile(atPath: metricsURL.path, contents: nil)
    let metrics = try FileHandle(forWritingTo: metricsURL)
    defer { try? metrics.close() }
    var steps: [StepMetrics] = []
    var validations: [(step: Int, loss: Double)] = []
    let (initialLoss, _) = validation.isEmpty ? (Double.nan, 0) : trainer.validationLoss()
    if !validation.isEmpty {
      validations.append((0, initialLoss))
      progress.show(.validation(step: 0, loss: initialLoss, tokens: 0))
    }
    try trainer.run { event in
      progress.show(event)
      var record: [String: Any]
      switch event {
      case .step(let m):
        steps.append(m)
        record = [
          "event": "step", "step": m.step, "loss": m.loss, "lr": m.learningRate, "grad_norm": m.gradientNorm,
          "tokens": m.tokens, "trained_tokens": m.trainedTokens, "seconds": m.seconds,
          "tokens_per_second": m.tokensPerSecond, "epoch": m.epoch,
        ]
      case .validation(let step, let loss, let tokens):
        validations.append((step, loss))
        record = [
          "event": "validation", "step": step, "loss": loss, "perplexity": exp(loss), "tokens": tokens,
        ]
      }
      if let line = try? JSONSerialization.data(withJSONObject: record, options: [.sortedKeys]) {
        metrics.write(line + Data("\n".utf8))
      }
    }
    progress.finish()

    try adapter.savePEFT(to: output.path, baseModel: model, overwrite: true)
    let elapsed = Date().timeIntervalSince(started)
    let tokens = steps.reduce(0) { $0 + $1.tokens }
    let trainSeconds = steps.reduce(0) { $0 + $1.seconds }
    var summary: [(String, String)] = [
      ("base model", "\(model) (\(origin.format))"),
      ("adapter", "\(output.path) (PEFT: adapter_config.json + adapter_model.safetensors)"),
      ("updates", "\(steps.count) of \(options.batchSize) sequences"),
      ("final training loss", steps.last.map { format($0.loss, 4) } ?? "-"),
      (
        "throughput",
        "\(format(Double(tokens) / max(trainSeconds, 1e-9), 1)) tokens/s over \(grouped(tokens)) tokens"
      ),
      ("wall time", duration(elapsed)),
      ("peak resident memory", formatBytes(ResidentMemory.peakBytes())),
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
    let configuration = try configurationRows()
    let html = TrainingReport.html(
      title: "LoRA training: \(output.lastPathComponent)", steps: steps, validations: validations,
      summary: summary,
      configuration: configuration)
    try Data(html.utf8).write(to: output.appendingPathComponent("report.html"), options: .atomic)
    let resolved = try JSONSerialization.data(
      withJSONObject: Dictionary(uniqueKeysWithValues: configuration), options: [.prettyPrinted, .sortedKeys])
    try resolved.write(to: output.appendingPathComponent("training_config.json"), options: .atomic)

    let closing =
      summary.map { "\($0.0): \($0.1)" }.joined(separator: "\n") + "\nreport: \(output.path)/report.html"
    if progress.jsonLines {
      progress.emit([
        "event": "finished", "adapter": output.path, "report": output.path + "/report.html",
        "final_loss": steps.last?.loss ?? Double.nan, "validation_loss": validations.last?.loss ?? Double.nan,
      ])
    } else {
      print(closing)
    }
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
