import LoRACheckpoint
import LoRAKernels
import LoRATraining

/// Everything a run reports, from the job down to one update: emitted by the library
/// (`UnitRun`, `JobRunner`) on the rank that reports (rank 0 of the world or of a group),
/// rendered by the CLI for a terminal or as JSON lines, and written to each adapter's
/// `metrics.jsonl` (`AdapterOutput`).
public enum RunEvent: Sendable {
  /// A job starts: its file, adapters, ranks, groups, estimated seconds and queued units.
  case job(path: String, adapters: Int, ranks: Int, groups: Int, estimatedSeconds: Double, queued: Int)
  /// A rank group starts a run the plan placed on it up front.
  case group(index: Int, ranks: ClosedRange<Int>, placement: String, adapters: [String])
  /// A rank group took a queued unit (1-based `position` of `queued`).
  case claimed(group: Int, adapters: [String], position: Int, queued: Int)
  /// An adapter an earlier run finished: nothing trained, nothing rewritten. `detail`
  /// says where it stands (for `train`: the checkpoint resumed from).
  case skipped(AdapterRef, step: Int?, detail: String?)
  /// Training of one adapter alone starts: what was loaded and what will run.
  case started(AdapterRef, intro: String)
  /// One update of an adapter.
  case step(AdapterRef, StepMetrics)
  /// The mean validation loss after `step` updates, over `tokens` trained tokens.
  case validation(AdapterRef, step: Int, loss: Double, tokens: Int)
  /// A checkpoint was written (and older ones pruned).
  case checkpoint(AdapterRef, CheckpointStore.Saved)
  /// DPO's reference being scored once for every training pair before the first update:
  /// `scored` of `pairs` so far, and once more when done (`TrainingEvent.reference`).
  case reference(AdapterRef, scored: Int, pairs: Int, seconds: Double)
  /// Successive halving scored the adapter at a rung: kept, or stopped there.
  case halved(AdapterRef, step: Int, loss: Double, kept: Bool)
  /// A sweep's rung: every scored member, best first, and how many were kept.
  /// `concurrent`: other rank groups report at the same time.
  case rung(sweep: String, step: Int, ranking: [RungEntry], kept: Int, concurrent: Bool)
  /// A sweep finished: which member won and the lowest rank that came close.
  case sweepFinished(sweep: String, summary: String, concurrent: Bool)
  /// Training stopped on request after `step`, with this checkpoint.
  case stopped(AdapterRef, step: Int, checkpoint: String?)
  /// An adapter is written: its summary rows (the report's), final losses and report.
  case finished(AdapterRef, summary: [SummaryRow], finalLoss: Double?, validationLoss: Double?)
  /// Something went wrong that does not stop the run (a damaged checkpoint skipped).
  case warning(AdapterRef?, String)
  /// The job's combined report is written.
  case combinedReport(path: String)
  /// Every rank's mean time per update by phase (rank order), over the `updates` this run
  /// took; for a fused group, about the whole group (`ref`: its first member).
  case phases(AdapterRef, perRank: [PhaseTimes], updates: Int)
  /// A rung of `rank: auto` ended: its rank, validation loss and the decision taken (the
  /// adapter: the search's output folder).
  case rankRung(AdapterRef, rung: RankSearch.Rung)

  /// One row of a summary: a label and its value.
  public struct SummaryRow: Sendable, Equatable {
    public var label: String
    public var value: String
    public init(_ label: String, _ value: String) {
      self.label = label
      self.value = value
    }
  }

  /// One member of a sweep's rung.
  public struct RungEntry: Sendable, Equatable {
    public var adapter: String
    public var loss: Double
  }
}

/// The adapter an event is about.
public struct AdapterRef: Sendable, Equatable {
  /// Its name in a job; nil for `train`'s one adapter.
  public var name: String?
  /// Whether it trains fused with others (its progress shows in the fused group's style).
  public var fused: Bool
  /// Its number of updates.
  public var totalSteps: Int
  /// Its output folder.
  public var output: String
  /// Whether other rank groups report at the same time (lines then carry the name).
  public var concurrent: Bool

  public init(name: String?, fused: Bool, totalSteps: Int, output: String, concurrent: Bool = false) {
    self.name = name
    self.fused = fused
    self.totalSteps = totalSteps
    self.output = output
    self.concurrent = concurrent
  }
}
