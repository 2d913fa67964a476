import Foundation
import LoRACheckpoint
import LoRAKernels
import LoRAModel
import LoRAServe
import LoRATraining

/// What one adapter's run leaves in its output folder, for `train` and for every adapter of
/// `train --jobs` (alone or fused): `metrics.jsonl` — started empty, or cut back to the
/// checkpoint a run resumes from — with a line per update, validation (the base's at update
/// 0 first) and checkpoint, and in a job per halving decision and per run of the adapter's
/// unit (`unit`: where and when, for the job's dashboard); the history those lines make (for
/// the report); and at the end the PEFT adapter, `report.html` and `training_config.json`.
///
/// Only rank 0 writes: on the other ranks (`leader` false) the lines go nowhere, and the
/// history is kept as on rank 0.
public final class AdapterOutput {
  public let folder: URL
  /// Updates of the run, for the history read back from an earlier run's metrics.
  public let totalSteps: Int
  /// Added to every line as `"adapter"` (the lines of a job's adapters name it).
  public let adapterName: String?
  public private(set) var steps: [StepMetrics] = []
  /// Validation losses by update, the base's (update 0) first when it was measured.
  public var validations: [(step: Int, loss: Double)] = []
  private var metrics: FileHandle?

  public var metricsURL: URL { folder.appendingPathComponent("metrics.jsonl") }

  /// How the metrics file starts.
  public enum Start {
    /// An empty file (a run from the beginning).
    case fresh
    /// The earlier run's lines up to update `step`, the checkpoint resumed from; what came
    /// after it is trained again.
    case resumed(step: Int)
    /// The earlier run's lines as they are (the adapter finished; only its history is needed).
    case finished
  }

  public init(folder: URL, totalSteps: Int, adapterName: String? = nil, leader: Bool, start: Start) throws {
    self.folder = folder
    self.totalSteps = totalSteps
    self.adapterName = adapterName
    guard leader else { return }
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    let url = metricsURL
    switch start {
    case .fresh:
      _ = FileManager.default.createFile(atPath: url.path, contents: nil)
    case .resumed(let step):
      let kept: [String]
      (steps, validations, kept) = Self.history(url, upTo: step, totalSteps: totalSteps)
      try Data(kept.map { $0 + "\n" }.joined().utf8).write(to: url, options: .atomic)
    case .finished:
      (steps, validations, _) = Self.history(url, upTo: .max, totalSteps: totalSteps)
    }
    metrics = try FileHandle(forWritingTo: url)
    try metrics?.seekToEnd()
  }

  deinit { try? metrics?.close() }

  /// Records an update; returns the line's object.
  @discardableResult
  public func step(_ m: StepMetrics) -> [String: Any] {
    steps.append(m)
    return record(Self.object(step: m))
  }

  /// Records a validation loss after update `step`; returns the line's object.
  @discardableResult
  public func validation(step: Int, loss: Double, tokens: Int, preference: DPOMetrics? = nil) -> [String: Any]
  {
    validations.append((step, loss))
    var object = Self.object(validation: step, loss: loss, tokens: tokens)
    // DPO: the mean loss over the held-out pairs (`pairs`), TRL's metrics, no perplexity.
    if let preference {
      object["perplexity"] = nil
      object["tokens"] = nil
      object["pairs"] = tokens
      object.merge(preference.fields) { $1 }
    }
    return record(object)
  }

  /// Records a checkpoint written; returns the line's object.
  @discardableResult
  public func checkpoint(_ saved: CheckpointStore.Saved) -> [String: Any] {
    record(Self.object(checkpoint: saved))
  }

  /// The metrics line of DPO's reference, scored once before the first update.
  public static func object(referencePairs pairs: Int, seconds: Double) -> [String: Any] {
    ["event": "reference", "pairs": pairs, "seconds": seconds]
  }

  /// The metrics line of an update.
  public static func object(step m: StepMetrics) -> [String: Any] {
    var object: [String: Any] = [
      "event": "step", "step": m.step, "loss": m.loss, "lr": m.learningRate, "grad_norm": m.gradientNorm,
      "tokens": m.tokens, "trained_tokens": m.trainedTokens, "seconds": m.seconds,
      "tokens_per_second": m.tokensPerSecond, "epoch": m.epoch,
    ]
    // Rank 0's time by phase in this update.
    if let phases = m.phases { object["phases"] = phases.fields }
    // DPO: the loss is the mean over the update's pairs; TRL's metrics beside it.
    if let p = m.preference {
      object["pairs"] = m.trainedTokens
      object.merge(p.fields) { $1 }
    }
    return object
  }

  /// The metrics line of a validation loss after update `step`.
  public static func object(validation step: Int, loss: Double, tokens: Int) -> [String: Any] {
    ["event": "validation", "step": step, "loss": loss, "perplexity": exp(loss), "tokens": tokens]
  }

  /// The metrics line of a checkpoint written.
  public static func object(checkpoint saved: CheckpointStore.Saved) -> [String: Any] {
    [
      "event": "checkpoint", "step": saved.step, "path": saved.path, "bytes": saved.fileBytes,
      "raw_bytes": saved.rawBytes, "seconds": saved.seconds,
    ]
  }

  /// The metrics line of a successive-halving decision at update `step`.
  public static func object(halved step: Int, loss: Double, kept: Bool) -> [String: Any] {
    ["event": "halved", "step": step, "validation_loss": loss, "kept": kept]
  }

  /// The metrics line of a job's unit (`placement`) that ran from `started` to `ended`
  /// (Unix seconds), leaving this adapter at update `step`; `stopped` when a stop request
  /// ended it. Each run of a unit adds one (a resumed unit: one per run).
  public static func object(
    unit placement: UnitPlacement, step: Int, started: Date, ended: Date, stopped: Bool
  ) -> [String: Any] {
    [
      "event": "unit", "step": step, "group": placement.group,
      "ranks": [placement.ranks.lowerBound, placement.ranks.upperBound], "placement": placement.placement,
      "queued": placement.queued, "adapters": placement.adapters, "started_at": started.timeIntervalSince1970,
      "finished_at": ended.timeIntervalSince1970, "ending": stopped ? "stopped" : "finished",
    ]
  }

  /// Writes one metrics line (with the adapter's name, if any); returns its object.
  @discardableResult
  public func record(_ object: [String: Any]) -> [String: Any] {
    var object = object
    if let adapterName { object["adapter"] = adapterName }
    metrics?.write(Data((jsonLine(object) + "\n").utf8))
    return object
  }

  /// Whether `folder` holds what `finish` writes last in a finished run: the PEFT weights
  /// and the report.
  public static func isComplete(_ folder: URL) -> Bool {
    ["adapter_model.safetensors", "report.html"].allSatisfy {
      FileManager.default.fileExists(atPath: folder.appendingPathComponent($0).path)
    }
  }

  /// Writes the adapter as a PEFT folder, its route signature (the base's mean last hidden
  /// state over a sample of the training prompts, for `serve`'s "auto" routing), the report
  /// (`summary` rows, then the history's charts and the `configuration` rows) and the
  /// configuration as `training_config.json`.
  public func finish(
    adapter: LoRAAdapter, baseModel: String, title: String, summary: [(String, String)],
    configuration: [(String, String)], signature: RouteSignature
  ) throws {
    try adapter.savePEFT(to: folder.path, baseModel: baseModel, overwrite: true)
    try signature.save(in: folder.path)
    let html = TrainingReport.html(
      title: title, steps: steps, validations: validations, summary: summary, configuration: configuration)
    try Data(html.utf8).write(to: folder.appendingPathComponent("report.html"), options: .atomic)
    let resolved = try JSONSerialization.data(
      withJSONObject: Dictionary(uniqueKeysWithValues: configuration), options: [.prettyPrinted, .sortedKeys])
    try resolved.write(to: folder.appendingPathComponent("training_config.json"), options: .atomic)
  }

  /// One line of a metrics file: its event, the update it belongs to, its fields and text.
  public struct Record {
    public var event: String
    public var step: Int
    public var fields: [String: Any]
    public var line: Substring

    /// The number at `key`, nil when absent.
    public func number(_ key: String) -> Double? { (fields[key] as? NSNumber)?.doubleValue }
  }

  /// The lines of the metrics file at `url` that have an event and a step, in file order;
  /// none when it is missing or unreadable, and lines that do not parse are passed over.
  public static func records(_ url: URL) -> [Record] {
    let text = (try? String(contentsOf: url, encoding: .utf8)) ?? ""
    return text.split(separator: "\n").compactMap { line in
      guard let fields = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
        let event = fields["event"] as? String, let step = fields["step"] as? Int
      else { return nil }
      return Record(event: event, step: step, fields: fields, line: line)
    }
  }

  /// The steps and validations up to update `step` in a metrics file, and its lines that
  /// belong to them.
  public static func history(_ url: URL, upTo step: Int, totalSteps: Int) -> (
    [StepMetrics], [(step: Int, loss: Double)], [String]
  ) {
    var kept: [String] = []
    var steps: [StepMetrics] = []
    var validations: [(step: Int, loss: Double)] = []
    for record in records(url) where record.step <= step {
      kept.append(String(record.line))
      func number(_ key: String) -> Double { record.number(key) ?? .nan }
      if record.event == "step" {
        var metrics = StepMetrics(
          step: record.step, totalSteps: totalSteps, loss: number("loss"), learningRate: number("lr"),
          gradientNorm: number("grad_norm"), tokens: record.fields["tokens"] as? Int ?? 0,
          trainedTokens: record.fields["trained_tokens"] as? Int ?? 0, seconds: number("seconds"),
          tokensPerSecond: number("tokens_per_second"), epoch: number("epoch"), etaSeconds: 0)
        if let phases = record.fields["phases"] as? [String: Double] {
          metrics.phases = PhaseTimes(seconds: Phase.allCases.map { phases[$0.key] ?? 0 })
        }
        steps.append(metrics)
      } else if record.event == "validation" {
        validations.append((record.step, number("loss")))
      }
    }
    return (steps, validations, kept)
  }
}
