import Foundation
import LoRARun
import LoRATraining

/// Renders a run's events: one switch for the terminal and one for JSON lines, with the
/// lines and fields `train` and `train --jobs` have always printed. An adapter trained alone
/// shows a live progress line (or, in a job, lines labelled `[name] `); fused adapters show
/// `name: …` lines (`[name] …` when several groups print at once).
extension Progress {
  /// Renders `event`.
  func render(_ event: RunEvent) {
    if case .warning = event {
      renderText(event)
    } else if !jsonLines {
      renderText(event)
    } else if let (progress, object) = json(event) {
      progress.emit(object)
    }
  }

  /// The JSON object of `event` and the progress that emits it (which adds the adapter's
  /// name when labelled); nil for events shown as text only.
  private func json(_ event: RunEvent) -> (Progress, [String: Any])? {
    func named(_ ref: AdapterRef, _ object: [String: Any]) -> (Progress, [String: Any]) {
      var object = object
      object["adapter"] = ref.name
      return (self, object)
    }
    switch event {
    case .job(let path, let adapters, let ranks, let groups, let estimated, let queued):
      return (
        self,
        [
          "event": "job", "path": path, "adapters": adapters, "ranks": ranks, "groups": groups,
          "estimated_seconds": estimated, "queued": queued,
        ]
      )
    case .group(let index, let ranks, let placement, let adapters):
      return (
        self,
        [
          "event": "group", "group": index, "ranks": [ranks.lowerBound, ranks.upperBound],
          "placement": placement,
          "adapters": adapters,
        ]
      )
    case .claimed(let group, let adapters, let position, let queued):
      return (
        self,
        ["event": "queued", "group": group, "adapters": adapters, "position": position, "queued": queued]
      )
    case .skipped(let ref, let step, _):
      var object: [String: Any] = ["event": "skipped", "reason": "finished", "output": ref.output]
      object["step"] = step
      return (shown(ref), object)
    case .started(let ref, let intro): return (shown(ref), ["event": "start", "message": intro])
    case .step(let ref, let m):
      return ref.fused ? named(ref, AdapterOutput.object(step: m)) : (shown(ref), Self.object(.step(m)))
    case .validation(let ref, let step, let loss, let tokens):
      return ref.fused
        ? named(ref, AdapterOutput.object(validation: step, loss: loss, tokens: tokens))
        : (shown(ref), Self.object(.validation(step: step, loss: loss, tokens: tokens)))
    case .checkpoint(let ref, let saved):
      return ref.fused
        ? named(ref, AdapterOutput.object(checkpoint: saved)) : (shown(ref), Self.object(.checkpoint(saved)))
    case .reference(let ref, let scored, let pairs, let seconds):
      let event = TrainingEvent.reference(scored: scored, pairs: pairs, seconds: seconds)
      return ref.fused ? named(ref, Self.object(event)) : (shown(ref), Self.object(event))
    case .halved(let ref, let step, let loss, let kept):
      return named(ref, AdapterOutput.object(halved: step, loss: loss, kept: kept))
    case .rung: return nil
    case .sweepFinished(let sweep, let summary, _):
      return (self, ["event": "message", "adapter": sweep, "message": summary])
    case .stopped(let ref, let step, let checkpoint):
      guard !ref.fused else { return nil }
      return (shown(ref), ["event": "stopped", "step": step, "checkpoint": checkpoint ?? NSNull()])
    case .finished(let ref, _, let finalLoss, let validationLoss):
      if ref.fused {
        return named(
          ref, ["event": "message", "message": "adapter \(ref.output), report \(ref.output)/report.html"])
      }
      return (
        shown(ref),
        [
          "event": "finished", "adapter": ref.output, "output": ref.output,
          "report": ref.output + "/report.html",
          "final_loss": finalLoss ?? Double.nan, "validation_loss": validationLoss ?? Double.nan,
        ]
      )
    case .warning: return nil
    case .combinedReport(let path): return (self, ["event": "combined_report", "path": path])
    case .phases(let ref, let perRank, let updates):
      return (
        shown(ref),
        [
          "event": "phases", "output": ref.output, "updates": updates,
          "ranks": perRank.enumerated().map { $0.element.object(rank: $0.offset) },
        ]
      )
    case .rankRung(let ref, let rung):
      return (
        shown(ref),
        [
          "event": "rank_rung", "output": ref.output, "rank": rung.rank,
          "validation_loss": rung.validationLoss,
          "improvement": rung.improvement as Any, "decision": rung.decision,
        ]
      )
    }
  }

  /// The progress an adapter's events go to: labelled with its name in JSON lines and,
  /// when other groups print at the same time, in text.
  func shown(_ ref: AdapterRef) -> Progress {
    guard let name = ref.name, jsonLines || ref.concurrent else { return self }
    return labelled(name)
  }

  /// A line about adapter (or sweep) `name` in the fused style.
  func say(fused name: String, concurrent: Bool, _ text: String) {
    if jsonLines {
      emit(["event": "message", "adapter": name, "message": text])
    } else {
      print(concurrent ? "[\(name)] \(text)" : "\(name): \(text)")
    }
  }

  private func renderText(_ event: RunEvent) {
    switch event {
    case .job(let path, let adapters, let ranks, let groups, let estimated, let queued):
      print(
        "job \(path): \(adapters) adapter(s) on \(ranks) rank(s) in \(groups) group(s), estimated \(duration(estimated))"
          + (queued == 0 ? "" : "; \(queued) queued, taken by the groups as they become free"))
    case .group(let index, let ranks, let placement, let adapters):
      print(
        "group \(index) (ranks \(ranks.lowerBound)–\(ranks.upperBound)): \(placement) \(adapters.joined(separator: ", "))"
      )
    case .claimed(let group, let adapters, let position, let queued):
      print(
        "group \(group) takes queued adapter \(adapters.joined(separator: ", ")) (queue position \(position)/\(queued))"
      )
    case .skipped(let ref, let step, let detail):
      if let step {
        shown(ref).say(
          "already finished: update \(step) of \(ref.totalSteps) in \(detail ?? "-"); "
            + "\(ref.output) holds the adapter and report (nothing to train, nothing rewritten)")
      } else {
        shown(ref).say("already finished: \(ref.output) (skipped)")
      }
    case .started(let ref, let intro): shown(ref).say(intro)
    case .step(let ref, let m):
      if ref.fused {
        say(
          fused: ref.name ?? "", concurrent: ref.concurrent,
          "step \(m.step)/\(ref.totalSteps)  loss \(format(m.loss, 4))  \(format(m.tokensPerSecond, 0)) tok/s"
        )
      } else {
        shown(ref).show(.step(m))
      }
    case .validation(let ref, let step, let loss, let tokens):
      if ref.fused {
        say(
          fused: ref.name ?? "", concurrent: ref.concurrent,
          "step \(step): validation loss \(format(loss, 4))")
      } else {
        shown(ref).show(.validation(step: step, loss: loss, tokens: tokens))
      }
    case .checkpoint(let ref, let saved): if !ref.fused { shown(ref).show(.checkpoint(saved)) }
    case .reference(let ref, let scored, let pairs, let seconds):
      let event = TrainingEvent.reference(scored: scored, pairs: pairs, seconds: seconds)
      if ref.fused {
        say(fused: ref.name ?? "", concurrent: ref.concurrent, Self.text(event))
      } else {
        shown(ref).show(event)
      }
    case .halved: break
    case .rung(let sweep, let step, let ranking, let kept, let concurrent):
      say(
        fused: sweep, concurrent: concurrent,
        "rung at update \(step): "
          + ranking.enumerated().map { i, s in
            "\(s.adapter) \(format(s.loss, 4))\(i < kept ? "" : " (stopped)")"
          }
          .joined(separator: ", "))
    case .sweepFinished(let sweep, let summary, let concurrent):
      say(fused: sweep, concurrent: concurrent, summary)
    case .stopped(let ref, let step, let checkpoint):
      guard !ref.fused else { return }
      shown(ref).finish()
      shown(ref).say(
        "stopped on request after update \(step) of \(ref.totalSteps); checkpoint \(checkpoint ?? "-"); "
          + "continue with the same command and --resume \(ref.output)")
    case .finished(let ref, let summary, _, _):
      if ref.fused {
        say(
          fused: ref.name ?? "", concurrent: ref.concurrent,
          "adapter \(ref.output), report \(ref.output)/report.html")
      } else {
        shown(ref).finish()
        shown(ref).say(
          summary.map { "\($0.label): \($0.value)" }.joined(separator: "\n")
            + "\nreport: \(ref.output)/report.html")
      }
    case .warning(let ref, let text):
      let name = ref.flatMap { $0.fused ? $0.name : nil }.map { "\($0): " } ?? ""
      FileHandle.standardError.write(Data("warning: \(name)\(text)\n".utf8))
    case .combinedReport(let path): print("combined report: \(path)")
    case .phases(let ref, let perRank, let updates):
      // An adapter alone shows it in its summary ("time per update"); a fused group here.
      guard ref.fused else { return }
      say(
        fused: ref.name ?? "", concurrent: ref.concurrent,
        "time per update over \(updates) updates, fused group: "
          + perRank.enumerated().map { "rank \($0.offset): \($0.element.line)" }.joined(separator: "; "))
    case .rankRung(let ref, let rung):
      let gain =
        rung.improvement.map { String(format: ", %.2f%% better than the previous rank", 100 * $0) } ?? ""
      let next = [
        "grow": "growing to the next rank", "stop": "not worth it: keeping the previous rank",
        "top": "the ladder's top: kept",
      ]
      shown(ref).say(
        "rank \(rung.rank): validation loss \(String(format: "%.4f", rung.validationLoss))\(gain); \(next[rung.decision] ?? rung.decision)"
      )
    }
  }
}
