import Foundation
import LoRACoordinator
import LoRATraining

/// Successive halving over the sweeps of a fused group: at each rung every surviving member
/// of a sweep is scored on its validation set, and all but the best `keep` fraction retire
/// (with a checkpoint and `retired.json`, so a resumed run keeps them retired and does not
/// score the rung again).
final class SweepHalving {
  /// One sweep's members (indices into the group), its halving, the survivors per rung and
  /// the next rung to score.
  struct Sweep {
    var members: [Int]
    var halving: SuccessiveHalving
    var survivors: [Int]
    var next: Int
  }

  let run: UnitRun
  let group: FusedTrainer
  let outputs: [AdapterOutput]
  let cadences: [CheckpointCadence]
  private(set) var sweeps: [String: Sweep] = [:]

  init(_ run: UnitRun, group: FusedTrainer, outputs: [AdapterOutput], cadences: [CheckpointCadence]) throws {
    self.run = run
    self.group = group
    self.outputs = outputs
    self.cadences = cadences
    for (k, plan) in run.plans.enumerated() {
      guard let member = plan.sweep, let halving = member.successiveHalving else { continue }
      var entry =
        sweeps[member.sweep]
        ?? Sweep(members: [], halving: halving, survivors: halving.survivors(of: member.count), next: 0)
      entry.members.append(k)
      sweeps[member.sweep] = entry
    }
    // Members a halving rung stopped before an interruption stay stopped, and the rungs they
    // went through are not run again.
    for (k, plan) in run.plans.enumerated()
    where FileManager.default.fileExists(atPath: plan.retiredMarker.path) {
      group.retire(k)
    }
    for name in sweeps.keys {
      guard var entry = sweeps[name] else { continue }
      let reached = entry.members.map { group.trainers[$0].step }.max() ?? 0
      let halvedHere = entry.members.contains {
        group.retired.contains($0) && group.trainers[$0].step == reached
      }
      entry.next = entry.halving.rungs.filter { $0 < reached || ($0 == reached && halvedHere) }.count
      sweeps[name] = entry
    }
  }

  /// Scores every sweep whose surviving members all reached their next rung, and retires
  /// the worst. Every rank scores the same members, so every rank retires the same ones.
  func scoreDueRungs() throws {
    let leader = run.leader
    for name in sweeps.keys.sorted() {
      guard var entry = sweeps[name], entry.next < entry.halving.rungs.count else { continue }
      let rung = entry.halving.rungs[entry.next]
      let alive = entry.members.filter(group.isActive)
      guard !alive.isEmpty, alive.allSatisfy({ group.trainers[$0].step == rung }) else { continue }
      var scored: [(member: Int, loss: Double)] = []
      for k in alive { scored.append((k, try group.trainers[k].validationLoss().loss)) }
      scored.sort { ($0.loss, $0.member) < ($1.loss, $1.member) }
      let keep = entry.survivors[entry.next]
      for (k, loss) in scored.dropFirst(keep) {
        group.retire(k)
        if leader {
          // Remembered across a resume: this member trains no further.
          let marker = try JSONSerialization.data(
            withJSONObject: ["step": rung, "validation_loss": loss, "sweep": name], options: [.sortedKeys])
          try marker.write(to: run.plans[k].retiredMarker, options: .atomic)
          let saved = try group.trainers[k].saveCheckpoint(cadences[k])
          outputs[k].checkpoint(saved)
          run.emit(.checkpoint(run.ref(k), saved))
        }
        outputs[k].record(AdapterOutput.object(halved: rung, loss: loss, kept: false))
        if leader { run.emit(.halved(run.ref(k), step: rung, loss: loss, kept: false)) }
      }
      for (k, loss) in scored.prefix(keep) {
        outputs[k].record(AdapterOutput.object(halved: rung, loss: loss, kept: true))
        if leader { run.emit(.halved(run.ref(k), step: rung, loss: loss, kept: true)) }
      }
      if leader {
        run.emit(
          .rung(
            sweep: name, step: rung,
            ranking: scored.map { .init(adapter: run.plans[$0.member].name ?? "", loss: $0.loss) },
            kept: keep,
            concurrent: run.concurrent))
      }
      entry.next += 1
      sweeps[name] = entry
    }
  }

  /// Per sweep, in name order: which member won, and the lowest rank that came within 2%
  /// of its final validation loss (the advice "start with a low rank and raise it if
  /// needed", measured).
  func summaries() -> [(String, String)] {
    sweeps.keys.sorted().map { name in
      let finals = sweeps[name]!.members.compactMap { k -> (member: Int, loss: Double, rank: Int)? in
        guard !group.retired.contains(k), let loss = outputs[k].validations.last?.loss else { return nil }
        return (k, loss, group.trainers[k].adapter.config.r)
      }
      guard let best = finals.min(by: { $0.loss < $1.loss }) else {
        return (name, "no member finished with a validation loss")
      }
      let enough = finals.filter { $0.loss <= best.loss * 1.02 }.min {
        ($0.rank, $0.loss) < ($1.rank, $1.loss)
      }!
      let names = run.plans.map { $0.name ?? "" }
      return (
        name,
        "best \(names[best.member]) (validation loss \(format(best.loss, 4))); "
          + "rank \(enough.rank) was enough (\(names[enough.member]) within 2% of the best)"
      )
    }
  }
}
