import Foundation
import LoRATraining

#if canImport(Glibc)
  import Glibc
#endif

/// Renders training events: a live line on a terminal, JSON lines otherwise (or with --json).
struct Progress {
  let jsonLines: Bool

  init(forceJSON: Bool) {
    jsonLines = forceJSON || isatty(STDOUT_FILENO) == 0
  }

  func show(_ event: TrainingEvent) {
    switch event {
    case .step(let m):
      if jsonLines {
        emit([
          "event": "step", "step": m.step, "steps": m.totalSteps, "loss": m.loss, "lr": m.learningRate,
          "grad_norm": m.gradientNorm, "tokens_per_second": m.tokensPerSecond, "eta_seconds": m.etaSeconds,
          "epoch": m.epoch,
        ])
      } else {
        let line =
          "step \(m.step)/\(m.totalSteps)  loss \(format(m.loss, 4))  lr \(String(format: "%.2e", m.learningRate))"
          + "  \(format(m.tokensPerSecond, 0)) tok/s  epoch \(format(m.epoch, 2))  ETA \(duration(m.etaSeconds))"
        FileHandle.standardOutput.write(Data(("\r\u{1B}[K" + line).utf8))
      }
    case .validation(let step, let loss, let tokens):
      if jsonLines {
        emit(["event": "validation", "step": step, "loss": loss, "perplexity": exp(loss), "tokens": tokens])
      } else {
        print(
          "\r\u{1B}[Kstep \(step): validation loss \(format(loss, 4)) (perplexity \(format(exp(loss), 2)), \(tokens) tokens)"
        )
      }
    case .checkpoint(let saved):
      let ratio = Double(saved.rawBytes) / Double(max(saved.fileBytes, 1))
      if jsonLines {
        emit([
          "event": "checkpoint", "step": saved.step, "path": saved.path, "bytes": saved.fileBytes,
          "raw_bytes": saved.rawBytes, "delta_of": saved.deltaOf ?? NSNull(), "seconds": saved.seconds,
          "removed": saved.removed,
        ])
      } else {
        let kind = saved.deltaOf.map { "delta of \($0)" } ?? "full"
        print(
          "\r\u{1B}[Kstep \(saved.step): checkpoint \(URL(fileURLWithPath: saved.path).lastPathComponent) (\(kind), "
            + "\(formatBytes(saved.fileBytes)), \(format(ratio, 2))× smaller than raw, \(format(saved.seconds * 1000, 0)) ms)"
        )
      }
    }
  }

  /// Ends the live line before other output.
  func finish() { if !jsonLines { print("") } }

  func emit(_ object: [String: Any]) {
    print(jsonLine(object))
  }
}

/// 3725 seconds → "1h02m05s".
func duration(_ seconds: Double) -> String {
  guard seconds.isFinite else { return "-" }
  let s = Int(seconds.rounded())
  if s >= 3600 { return String(format: "%dh%02dm%02ds", s / 3600, s / 60 % 60, s % 60) }
  if s >= 60 { return String(format: "%dm%02ds", s / 60, s % 60) }
  return "\(s)s"
}

/// One JSON object as a line; numbers that JSON cannot hold (NaN, ±infinity) become null.
func jsonLine(_ object: [String: Any]) -> String {
  let safe = object.mapValues { value -> Any in
    if let number = value as? Double, !number.isFinite { return NSNull() }
    return value
  }
  guard let data = try? JSONSerialization.data(withJSONObject: safe, options: [.sortedKeys]) else {
    return "{\"event\":\"error\",\"message\":\"unserialisable event\"}"
  }
  return String(decoding: data, as: UTF8.self)
}
