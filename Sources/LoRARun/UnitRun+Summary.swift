import Foundation
import LoRACheckpoint
import LoRACoordinator
import LoRAKernels
import LoRATraining

/// What a unit says about its adapters: the introduction of one adapter trained alone, and
/// the summary rows at the top of each adapter's report.
extension UnitRun {
  /// The model, data, split, adapter and ranks of one adapter trained alone.
  func intro(_ group: FusedTrainer, data: TrainingPlan.LoadedData, resumedFrom: String?) -> String {
    let plan = plans[0]
    let llama = loaded.model
    let stats = data.dataset.stats
    let comm = communicator
    // DPO's batch sizes count pairs.
    let units = plan.options.dpo == nil ? "sequences" : "pairs"
    return
      "model \(plan.model) (\(loaded.origin.format), \(grouped(llama.config.parameterCount)) parameters, loaded in "
      + "\(format(loaded.origin.loadSeconds, 2)) s; base in \(loaded.origin.precision.rawValue), "
      + "\(formatBytes(loaded.origin.weightBytes)))\n"
      + "data \(plan.data): \(stats.examples) examples, \(grouped(stats.tokens)) tokens, \(grouped(stats.trainedTokens)) trained; "
      + "\(stats.truncated) truncated to \(plan.dataset.maxSequenceLength) tokens, \(stats.skippedLines) bad lines skipped\n"
      + "split: \(data.train.count) training, \(data.validation.count) validation examples\n"
      + "adapter: r \(plan.lora.r), alpha \(plan.lora.loraAlpha), \(group.trainers[0].adapter.modules.count) modules, "
      + (plan.lora.virtualTokens.map {
        "\($0.summary) (\(grouped(group.trainers[0].adapter.virtualTokens?.count ?? 0)) parameters), "
      } ?? "")
      + "\(grouped(group.trainers[0].adapter.trainableCount)) trainable parameters; \(plan.options.steps) updates of \(plan.options.batchSize) "
      + "\(units), \(BLAS.threads) BLAS thread(s) (\(BLAS.coreName))"
      + (fullFineTune().map { "\n" + Self.describe($0) } ?? "")
      + (comm.size > 1
        ? "\n\(comm.size) ranks (\(comm.backend)), \(plan.options.batchSize / comm.size) \(units) each per update; "
          + "gradients all-reduced per update: \(formatBytes(group.allreduceBytes)) in one buffer" : "")
      + (resumedFrom.map { "\nresuming from \($0)" } ?? "")
  }

  /// The full fine-tune this adapter stands in for, on one rank's micro-batch (nil when the
  /// count fails, which the run itself would have reported).
  func fullFineTune() -> FullFineTuneEstimate? {
    let plan = plans[0]
    return try? FullFineTuneEstimate(
      config: loaded.model.config, lora: plan.lora, sequences: plan.options.microBatch,
      length: plan.dataset.maxSequenceLength)
  }

  /// "trainable: 460,800 of 134,515,008 parameters (0.34%, 292× fewer); a full fine-tune …".
  static func describe(_ e: FullFineTuneEstimate) -> String {
    "trainable: \(grouped(e.trainableParameters)) of \(grouped(e.modelParameters)) parameters "
      + "(\(format(e.trainablePercent, 3))%, \(format(e.reductionFactor, 0))× fewer); a full fine-tune would need "
      + "about \(formatBytes(e.totalBytes)) per rank (estimate: weights \(formatBytes(e.weightBytes)), gradients "
      + "\(formatBytes(e.gradientBytes)), AdamW \(formatBytes(e.optimizerBytes)), activations "
      + "\(formatBytes(e.activationBytes)))"
  }

  /// The report's summary of one adapter trained alone.
  func summary(
    _ group: FusedTrainer, output: AdapterOutput, data: TrainingPlan.LoadedData, elapsed: Double,
    lastCheckpoint: CheckpointStore.Saved?, memory: [(peak: Int, proportional: Int)]
  ) -> [RunEvent.SummaryRow] {
    let plan = plans[0]
    let comm = communicator
    let stats = data.dataset.stats
    let (steps, validations) = (output.steps, output.validations)
    let tokens = steps.reduce(0) { $0 + $1.tokens }
    let trainSeconds = steps.reduce(0) { $0 + $1.seconds }
    var rows: [RunEvent.SummaryRow] = [
      .init(
        "base model", "\(plan.model) (\(loaded.origin.format); held in \(loaded.origin.precision.rawValue))"),
      .init("adapter", "\(plan.output.path) (PEFT: adapter_config.json + adapter_model.safetensors)"),
      .init("updates", "\(steps.count) of \(plan.options.batchSize) sequences"),
      .init(
        "checkpoint",
        lastCheckpoint.map {
          "\($0.path) (\(formatBytes($0.fileBytes)), \(format(Double($0.rawBytes) / Double(max($0.fileBytes, 1)), 2))× smaller than raw)"
        } ?? "-"),
      .init("final training loss", steps.last.map { format($0.loss, 4) } ?? "-"),
      .init(
        "throughput",
        "\(format(Double(tokens) / max(trainSeconds, 1e-9), 1)) tokens/s over \(grouped(tokens)) tokens"),
      .init("wall time", duration(elapsed)),
      .init(
        "ranks",
        comm.size == 1
          ? "1"
          : "\(comm.size) (\(comm.backend)); gradients all-reduced per update: \(formatBytes(group.allreduceBytes)), "
            + "\(format(100 * group.allreduceSeconds / max(trainSeconds, 1e-9), 2))% of the training time on rank 0"
      ),
      .init(
        "memory",
        comm.size == 1
          ? "peak resident \(formatBytes(ResidentMemory.peakBytes()))"
          : (0..<comm.size).map {
            "rank \($0): peak resident \(formatBytes(memory[$0].peak)), proportional \(formatBytes(memory[$0].proportional))"
          }.joined(separator: "; ")
            + " (the base is shared by the ranks of a node; proportional counts each shared page once)"),
      .init(
        "full fine-tune",
        fullFineTune().map {
          "about \(formatBytes($0.totalBytes)) per rank (estimate: fp32 weights, gradients and AdamW moments "
            + "\(formatBytes($0.weightBytes + $0.gradientBytes + $0.optimizerBytes)), activations "
            + "\(formatBytes($0.activationBytes))) against the peak measured above; "
            + "\(format($0.reductionFactor, 0))× more trainable parameters"
        } ?? "not estimated"),
      .init(
        "training data",
        "\(plan.data): \(stats.examples) examples, \(stats.truncated) truncated, \(stats.skippedLines) skipped"
      ),
    ]
    if let first = validations.first, let last = validations.last {
      rows.insert(
        .init(
          "validation loss",
          "\(format(first.loss, 4)) → \(format(last.loss, 4)) (perplexity \(format(exp(last.loss), 2)))"),
        at: 4)
    }
    if let validationStats = data.validationStats {
      rows.append(
        .init("validation data", "\(plan.validationData ?? ""): \(validationStats.examples) examples"))
    }
    return rows
  }

  /// The report's summary of adapter `k` trained fused.
  func fusedSummary(_ k: Int, group: FusedTrainer, output: AdapterOutput) -> [RunEvent.SummaryRow] {
    let state = group.trainers[k]
    let names = plans.map { $0.name ?? "" }
    return [
      .init(
        "adapter",
        "\(plans[k].output.path) (PEFT), trained fused with "
          + names.filter { $0 != names[k] }.joined(separator: ", ")),
      .init("updates", "\(state.step) of \(state.options.batchSize) sequences"),
      .init("final training loss", output.steps.last.map { format($0.loss, 4) } ?? "-"),
      .init("validation loss", output.validations.map { format($0.loss, 4) }.joined(separator: " → ")),
    ]
  }
}

extension TrainingPlan {
  /// `retired.json` in an output folder: successive halving stopped that adapter.
  public static func retiredMarker(in output: URL) -> URL { output.appendingPathComponent("retired.json") }

  /// This adapter's `retired.json`.
  public var retiredMarker: URL { Self.retiredMarker(in: output) }

  /// Whether an earlier run finished this adapter: its PEFT adapter and report are written,
  /// and its newest checkpoint is at its last update (or successive halving retired it, or
  /// a `rank: auto` search ended).
  /// Reads one checkpoint header at most; nothing is loaded or rewritten.
  public var isFinished: Bool {
    guard AdapterOutput.isComplete(output) else { return false }
    // `rank: auto`: the search wrote its decision (after every rung finished).
    if rankLadder != nil {
      return FileManager.default.fileExists(atPath: output.appendingPathComponent("rank-search.json").path)
    }
    if FileManager.default.fileExists(atPath: retiredMarker.path) { return true }
    guard let newest = CheckpointStore.list(checkpointFolder).last,
      let training = try? CheckpointReader(path: newest.url.path).header.training
    else { return false }
    // More steps asked for than the checkpoint was written for: train on.
    return training.step == training.totalSteps && (requestedSteps ?? training.step) == training.step
  }
}
