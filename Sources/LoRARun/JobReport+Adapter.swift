import Foundation
import LoRACoordinator

/// An adapter of the dashboard read back from its output folder: the `metrics.jsonl` lines
/// `AdapterOutput` writes (`step`, `validation`, `halved`, `unit`; others are passed over),
/// `retired.json` and whether the adapter and its report are written.
extension JobReport.Adapter {
  /// Reads the adapter `name` from its folder `output`; a missing or unreadable metrics file
  /// gives an adapter with no history. Lines that do not parse are passed over.
  public static func read(name: String, output: URL, sweep: SweepMember? = nil) -> Self {
    var adapter = Self(name: name, output: output, sweep: sweep)
    var losses: [Int: Double] = [:]
    var rungs: [Int: Double] = [:]
    for record in AdapterOutput.records(output.appendingPathComponent("metrics.jsonl")) {
      let step = record.step
      switch record.event {
      case "step":
        adapter.steps += 1
        adapter.trainedTokens += record.fields["trained_tokens"] as? Int ?? 0
        adapter.trainingSeconds += record.number("seconds") ?? 0
      case "validation":
        losses[step] = record.number("loss") ?? .nan
      case "halved":
        rungs[step] = record.number("validation_loss") ?? .nan
        if record.fields["kept"] as? Bool == false { adapter.haltedAt = step }
      case "unit":
        if let unit = unit(record.fields) { adapter.units.append(unit) }
      default:
        continue
      }
    }
    losses.merge(rungs) { validation, _ in validation }
    adapter.curve = losses.keys.sorted().map { ($0, losses[$0]!) }
    if adapter.haltedAt == nil { adapter.haltedAt = retiredStep(output) }
    adapter.complete = AdapterOutput.isComplete(output)
    return adapter
  }

  /// The unit of a `unit` metrics line (`AdapterOutput.object(unit:…)`); nil when a field
  /// is missing.
  static func unit(_ object: [String: Any]) -> JobReport.Unit? {
    guard let group = object["group"] as? Int,
      let ranks = (object["ranks"] as? [Any])?.compactMap({ ($0 as? NSNumber)?.intValue }), ranks.count == 2,
      ranks[0] <= ranks[1], let placement = object["placement"] as? String,
      let adapters = object["adapters"] as? [String],
      let started = (object["started_at"] as? NSNumber)?.doubleValue,
      let ended = (object["finished_at"] as? NSNumber)?.doubleValue
    else { return nil }
    return JobReport.Unit(
      placement: UnitPlacement(
        group: group, ranks: ranks[0]...ranks[1], placement: placement,
        queued: object["queued"] as? Bool ?? false,
        adapters: adapters),
      started: started, ended: ended, stopped: object["ending"] as? String == "stopped")
  }

  /// The rung of `retired.json` in `output` (successive halving stopped the adapter there).
  static func retiredStep(_ output: URL) -> Int? {
    guard let data = try? Data(contentsOf: TrainingPlan.retiredMarker(in: output)),
      let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
    else { return nil }
    return object["step"] as? Int
  }
}
