import Foundation
import LoRACoordinator

/// An adapter of the dashboard read back from its output folder: the `metrics.jsonl` lines
/// `AdapterOutput` writes (`step`, `validation`, `halved`, `unit`; others are passed over),
/// `retired.json` and whether the adapter and its report are written. A `rank: auto`
/// adapter's `rank_rung` lines lead to its rungs' folders, read one after another.
extension JobReport.Adapter {
  /// Reads the adapter `name` from its folder `output`; a missing or unreadable metrics file
  /// gives an adapter with no history. Lines that do not parse are passed over.
  public static func read(name: String, output: URL, sweep: SweepMember? = nil) -> Self {
    var adapter = Self(name: name, output: output, sweep: sweep)
    var losses: [Int: Double] = [:]
    var rungs: [Int: Double] = [:]
    var rankRungs: [Int] = []
    adapter.record(output.appendingPathComponent("metrics.jsonl"), losses: &losses, rungs: &rungs) {
      rankRungs.append($0)
    }
    // `rank: auto`: each rung's history lies in `rank-R`; their updates follow one another.
    for rank in rankRungs {
      let offset = adapter.steps
      adapter.record(
        output.appendingPathComponent("rank-\(rank)/metrics.jsonl"), offset: offset, losses: &losses,
        rungs: &rungs, skipBase: offset > 0)
    }
    losses.merge(rungs) { validation, _ in validation }
    adapter.curve = losses.keys.sorted().map { ($0, losses[$0]!) }
    if adapter.haltedAt == nil { adapter.haltedAt = retiredStep(output) }
    adapter.complete = AdapterOutput.isComplete(output)
    return adapter
  }

  /// Adds the lines of the metrics file `url`, their updates counted from `offset`; each
  /// `rank_rung` line's rank goes to `rankRung`. `skipBase`: leave out the validation at
  /// update 0 (a later rung's start, the previous rung's end).
  mutating func record(
    _ url: URL, offset: Int = 0, losses: inout [Int: Double], rungs: inout [Int: Double],
    skipBase: Bool = false, rankRung: (Int) -> Void = { _ in }
  ) {
    for record in AdapterOutput.records(url) {
      let step = record.step + offset
      switch record.event {
      case "step":
        steps += 1
        trainedTokens += record.fields["trained_tokens"] as? Int ?? 0
        trainingSeconds += record.number("seconds") ?? 0
      case "validation" where !(skipBase && record.step == 0):
        losses[step] = record.number("loss") ?? .nan
      case "halved":
        rungs[step] = record.number("validation_loss") ?? .nan
        if record.fields["kept"] as? Bool == false { haltedAt = step }
      case "unit":
        if let unit = Self.unit(record.fields) { units.append(unit) }
      case "rank_rung":
        if let rank = record.number("rank") { rankRung(Int(rank)) }
      default:
        continue
      }
    }
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
