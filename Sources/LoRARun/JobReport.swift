import Foundation
import LoRACoordinator

/// The job's dashboard, `<output>/report.html`: every adapter in one table (base and final
/// validation loss, improvement, trained tokens, wall time, rank group, status), every
/// validation curve on one chart, a rank × learning-rate grid per sweep, and a timeline of
/// what each rank group trained when. Gathered from the files the run leaves in each
/// adapter's output folder (`metrics.jsonl`, `retired.json`, `report.html`), so world rank 0
/// sees what every rank group did; `write` renders it (`JobReport+HTML.swift`).
public struct JobReport {
  /// The job file's path, the page's title.
  public var job: String
  /// Where `report.html` goes: the job's `output`, else beside the first adapter's folder.
  public var folder: URL
  /// Every adapter of the job, in file order.
  public var adapters: [Adapter]
  /// When this run of the job started; units that ended before it were earlier runs'.
  public var started: Date?

  /// One adapter as its output folder tells it.
  public struct Adapter {
    public var name: String
    /// Its output folder.
    public var output: URL
    /// Set for a sweep member: its sweep, position and values.
    public var sweep: SweepMember?
    /// Validation losses by update, the base's (update 0) first when measured; a halving
    /// rung's score counts as the validation at its update.
    public var curve: [(step: Int, loss: Double)] = []
    /// Trained tokens over all its updates.
    public var trainedTokens = 0
    /// Updates recorded.
    public var steps = 0
    /// Seconds of its updates (the wall time when no unit line says more).
    public var trainingSeconds = 0.0
    /// The units that trained it, oldest first (one per run of the job that trained it).
    public var units: [Unit] = []
    /// The rung at which successive halving stopped it.
    public var haltedAt: Int?
    /// Whether its PEFT adapter and report are written.
    public var complete = false

    public init(name: String, output: URL, sweep: SweepMember? = nil) {
      self.name = name
      self.output = output
      self.sweep = sweep
    }

    /// The base's validation loss (update 0).
    public var baseLoss: Double? { curve.first { $0.step == 0 }?.loss }
    /// The last validation loss after an update.
    public var finalLoss: Double? { curve.last { $0.step > 0 }?.loss }
    /// Seconds its units ran, start to end; else the seconds of its updates.
    public var wallSeconds: Double {
      units.isEmpty ? trainingSeconds : units.reduce(0) { $0 + $1.ended - $1.started }
    }
  }

  /// What became of an adapter.
  public enum Status: Equatable, Sendable {
    /// Trained to its last update in this run.
    case finished
    /// Finished in an earlier run of the job; nothing trained now.
    case skipped
    /// Successive halving stopped it at this rung (update).
    case halted(step: Int)
    /// No adapter written: stopped, failed or not started.
    case unfinished
  }

  /// One run of a unit: its placement and when it ran (Unix seconds).
  public struct Unit: Equatable, Sendable {
    public var placement: UnitPlacement
    public var started: Double
    public var ended: Double
    /// Whether a stop request ended it.
    public var stopped: Bool
  }

  public init(job: String, folder: URL, adapters: [Adapter], started: Date? = nil) {
    self.job = job
    self.folder = folder
    self.adapters = adapters
    self.started = started
  }

  /// Reads every adapter of `job` from its output folder; `started`: when this run began.
  public static func gather(job: JobFile, started: Date? = nil) -> JobReport {
    let folder = URL(
      fileURLWithPath: job.output
        ?? URL(fileURLWithPath: job.adapters.first?.output ?? ".").deletingLastPathComponent().path)
    let adapters = job.adapters.map {
      Adapter.read(name: $0.name, output: URL(fileURLWithPath: $0.output), sweep: $0.sweep)
    }
    return JobReport(job: job.path, folder: folder, adapters: adapters, started: started)
  }

  /// Writes `report.html` into `folder` (created if needed); its path.
  @discardableResult
  public func write() throws -> String {
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    let url = folder.appendingPathComponent("report.html")
    try Data(html().utf8).write(to: url, options: .atomic)
    return url.path
  }

  /// What became of `adapter`: halted, else finished (skipped when all its units ended
  /// before this run started), else unfinished.
  public func status(_ adapter: Adapter) -> Status {
    if let step = adapter.haltedAt { return .halted(step: step) }
    guard adapter.complete else { return .unfinished }
    if let started, adapter.units.allSatisfy({ $0.ended < started.timeIntervalSince1970 }) { return .skipped }
    return .finished
  }

  /// Every unit run, once (a fused unit's adapters each record it), by start time; only
  /// this run's when it has any.
  public var units: [Unit] {
    var seen = Set<String>()
    var all: [Unit] = []
    for unit in adapters.flatMap(\.units) {
      let key = "\(unit.placement.group) \(unit.started) \(unit.placement.adapters)"
      if seen.insert(key).inserted { all.append(unit) }
    }
    all.sort { ($0.started, $0.placement.group) < ($1.started, $1.placement.group) }
    guard let started else { return all }
    let current = all.filter { $0.ended >= started.timeIntervalSince1970 }
    return current.isEmpty ? all : current
  }

  /// The path of `adapter`'s own report relative to `folder` (a link that survives moving
  /// the whole output folder); nil when it has none.
  public func reportLink(_ adapter: Adapter) -> String? {
    let report = adapter.output.appendingPathComponent("report.html")
    guard FileManager.default.fileExists(atPath: report.path) else { return nil }
    let from = folder.standardizedFileURL.pathComponents
    let to = report.standardizedFileURL.pathComponents
    var common = 0
    while common < min(from.count, to.count) && from[common] == to[common] { common += 1 }
    let up = [String](repeating: "..", count: from.count - common)
    return (up + to[common...]).joined(separator: "/")
  }
}
