import Foundation
import LoRARun
import LoRATraining

#if canImport(Glibc)
  import Glibc
#endif

/// Renders training events: a live line on a terminal, JSON lines otherwise (or with --json).
///
/// In a job, a progress for one adapter (`labelled`) writes whole lines that start with
/// `[name] ` and JSON objects that carry `"adapter": name`, so the lines of rank groups that
/// train at the same time stay readable on one terminal.
struct Progress {
  let jsonLines: Bool
  /// The adapter these events belong to, in a job (see `labelled`).
  private(set) var label: String?

  init(forceJSON: Bool) {
    jsonLines = forceJSON || isatty(STDOUT_FILENO) == 0
  }

  /// The same output for adapter `name`: whole lines prefixed `[name] `, JSON with its name.
  func labelled(_ name: String) -> Progress {
    var copy = self
    copy.label = name
    return copy
  }

  /// Whether the step line is rewritten in place (text on one line that the next step
  /// overwrites); never for a labelled progress, whose lines mix with other groups'.
  var live: Bool { !jsonLines && label == nil }

  func show(_ event: TrainingEvent) {
    if jsonLines {
      emit(Self.object(event))
      return
    }
    let text = Self.text(event)
    if Self.rewritten(event), live {
      FileHandle.standardOutput.write(Data(("\r\u{1B}[K" + text).utf8))
    } else {
      say(text)
    }
  }

  /// Whether `event`'s line is rewritten by the next one on a live terminal: steps, and the
  /// reference's progress.
  static func rewritten(_ event: TrainingEvent) -> Bool {
    switch event {
    case .step: return true
    case .reference(let scored, let pairs, _): return scored < pairs
    case .validation, .checkpoint: return false
    }
  }

  /// The JSON object of `event`.
  static func object(_ event: TrainingEvent) -> [String: Any] {
    switch event {
    case .step(let m):
      var object: [String: Any] = [
        "event": "step", "step": m.step, "steps": m.totalSteps, "loss": m.loss, "lr": m.learningRate,
        "grad_norm": m.gradientNorm, "tokens_per_second": m.tokensPerSecond, "eta_seconds": m.etaSeconds,
        "epoch": m.epoch,
      ]
      if let p = m.preference { object.merge(p.fields) { $1 } }
      if let phases = m.phases { object["phases"] = phases.fields }
      return object
    case .validation(let step, let loss, let tokens):
      return ["event": "validation", "step": step, "loss": loss, "perplexity": exp(loss), "tokens": tokens]
    case .reference(let scored, let pairs, let seconds):
      var object = AdapterOutput.object(referencePairs: pairs, seconds: seconds)
      if scored < pairs { object["scored"] = scored }
      return object
    case .checkpoint(let saved):
      return [
        "event": "checkpoint", "step": saved.step, "path": saved.path, "bytes": saved.fileBytes,
        "raw_bytes": saved.rawBytes, "delta_of": saved.deltaOf ?? NSNull(), "seconds": saved.seconds,
        "removed": saved.removed,
      ]
    }
  }

  /// The text line of `event`, without a label.
  static func text(_ event: TrainingEvent) -> String {
    switch event {
    case .step(let m):
      return
        "step \(m.step)/\(m.totalSteps)  loss \(format(m.loss, 4))  lr \(String(format: "%.2e", m.learningRate))"
        + "  \(format(m.tokensPerSecond, 0)) tok/s  epoch \(format(m.epoch, 2))  ETA \(duration(m.etaSeconds))"
    case .validation(let step, let loss, let tokens):
      return
        "step \(step): validation loss \(format(loss, 4)) (perplexity \(format(exp(loss), 2)), \(tokens) tokens)"
    case .reference(let scored, let pairs, let seconds) where scored < pairs:
      return
        "DPO reference: \(scored)/\(pairs) pairs scored  ETA \(duration(seconds / Double(max(scored, 1)) * Double(pairs - scored)))"
    case .reference(_, let pairs, let seconds):
      return
        "DPO reference scored once for \(pairs) pairs in \(duration(seconds)) (read by every update, no reference passes)"
    case .checkpoint(let saved):
      let ratio = Double(saved.rawBytes) / Double(max(saved.fileBytes, 1))
      let kind = saved.deltaOf.map { "delta of \($0)" } ?? "full"
      return
        "step \(saved.step): checkpoint \(URL(fileURLWithPath: saved.path).lastPathComponent) (\(kind), "
        + "\(formatBytes(saved.fileBytes)), \(format(ratio, 2))× smaller than raw, \(format(saved.seconds * 1000, 0)) ms)"
    }
  }

  /// `text` as whole lines: each prefixed `[label] ` when labelled; after a live line, on a
  /// fresh one.
  func say(_ text: String) {
    print(lines(text))
  }

  /// What `say` prints.
  func lines(_ text: String) -> String {
    guard let label else { return live ? "\r\u{1B}[K" + text : text }
    return text.split(separator: "\n", omittingEmptySubsequences: false).map { "[\(label)] \($0)" }
      .joined(separator: "\n")
  }

  /// Ends the live line before other output.
  func finish() { if live { print("") } }

  /// Prints `object` as one JSON line; a labelled progress sets its `"adapter"`.
  func emit(_ object: [String: Any]) {
    var object = object
    if let label { object["adapter"] = label }
    print(jsonLine(object))
  }
}
