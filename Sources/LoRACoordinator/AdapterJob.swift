import Foundation
import LoRAModel
import LoRATraining
import LoRAYAML

/// Where an adapter trains, as the job file asks (the planner turns `auto` into one of the others).
public enum Placement: String, Codable, CaseIterable, Sendable {
  /// The planner decides: grouped or swept adapters fused, others on separate rank groups
  /// when there are enough ranks, else queued on the groups there are.
  case auto
  /// One adapter at a time, data-parallel on the shared rank group; shared adapters queue.
  case shared
  /// The adapter gets its own rank group, running at the same time as the other groups.
  case separate
  /// Several adapters train together through one pass of the base on the same ranks.
  case fused
}

/// Successive halving over a sweep's members: at each rung (an update count) the members
/// with the best validation loss go on, `keep` of them (rounded up, at least one).
public struct SuccessiveHalving: Codable, Equatable, Sendable {
  /// Updates after which members are compared, strictly increasing, each below `steps`.
  public var rungs: [Int]
  /// Fraction of the members kept at each rung, in (0, 1); default 0.5.
  public var keep: Double

  public init(rungs: [Int], keep: Double = 0.5) {
    self.rungs = rungs
    self.keep = keep
  }

  /// How many of `members` are still training after each rung: `[after rung 0, after rung 1, …]`.
  public func survivors(of members: Int) -> [Int] {
    var alive = members
    return rungs.map { _ in
      alive = max(1, Int((Double(alive) * keep).rounded(.up)))
      return alive
    }
  }
}

/// What a sweep member is: the adapter it was expanded from and the values it takes.
public struct SweepMember: Codable, Equatable, Sendable {
  /// The `name` of the adapter entry that holds the sweep.
  public var sweep: String
  /// Position among the sweep's members (file order of the expansion).
  public var index: Int
  /// How many members the sweep has.
  public var count: Int
  /// The swept keys and this member's values, in the sweep's key order (`[["rank", "2"], ["lr", "0.0001"]]`).
  public var values: [[String]]
  public var successiveHalving: SuccessiveHalving?
}

/// One adapter of a job, resolved: defaults merged, a sweep expanded, paths absolute.
public struct AdapterJob: Codable, Equatable, Sendable {
  /// Unique in the job; `[A-Za-z0-9_.-]+`. Sweep members are named `base-r8-lr0.0003`.
  public var name: String
  /// Position in the expanded file order (the queue's tie-breaker).
  public var order: Int
  /// The training settings; `data`, `validation_data` and `output` are absolute paths.
  public var settings: AdapterSettings
  /// `auto`, `shared` or `separate` for an ungrouped adapter; `fused` when it has a `group`.
  public var placement: Placement
  /// The fused group: the `group` key, the sweep's name for a sweep, or "fused" for an
  /// ungrouped adapter placed `fused`.
  public var group: String?
  /// Ranks asked for its rank group, if any.
  public var ranks: Int?
  /// Higher runs first in the queue; default 0.
  public var priority: Int
  /// Set for the members of a sweep.
  public var sweep: SweepMember?
  /// The adapter it is built on (`parent:`): it trains over its ancestors' ΔW, frozen.
  public var parent: String? = nil
  /// Where the adapter's entry is in the job file.
  public var origin: Origin
  /// Where each set key came from (defaults, the entry, or a sweep value).
  public var origins: [String: Origin]

  /// The training data (absolute path).
  public var data: String { settings.data ?? "" }
  /// The adapter's output folder (absolute path).
  public var output: String { settings.output ?? "" }

  /// Where `key` was set, or the entry itself for a value left at its default.
  public func origin(of key: String) -> Origin {
    origins[key] ?? Origin(file: origin.file, line: origin.line, keyPath: "\(origin.keyPath).\(key)")
  }

  /// Sequences per update (`train`'s default 8); nil when `tokens_per_batch` sets the batch.
  public var batchSize: Int? {
    settings.tokensPerBatch == nil ? settings.batchSize ?? TrainingSettings.Defaults.batchSize : nil
  }
  public var microBatch: Int { settings.microBatch ?? TrainingSettings.Defaults.microBatch }
  public var maxSeqLen: Int { settings.maxSeqLen ?? TrainingSettings.Defaults.maxSeqLen }
}
