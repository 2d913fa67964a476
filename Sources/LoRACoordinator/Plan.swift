/// How a job runs on N ranks: rank groups (contiguous ranks that split off together, the
/// group's index being the split colour), what each group trains in order, and estimates.
public struct Plan: Codable, Equatable, Sendable {
  /// The ranks the plan is for.
  public var ranks: Int
  /// The rank groups, in rank order.
  public var groups: [RankGroup]
  /// Ranks no group uses (a remainder the groups could not use with their batch sizes).
  public var idleRanks: [Int]
  /// Adapter names in queue order: priority (higher first), then file order.
  public var queue: [String]
  /// The units not placed up front, in queue order: rank groups claim them at run time as
  /// they become free (``QueuedUnit``). The groups' `queued` runs are the estimate of which
  /// group takes which, from the cost model; the run follows the actual finishing times.
  public var queuedUnits: [QueuedUnit]
  /// Every adapter's plan, in file order.
  public var adapters: [AdapterPlan]
  /// When the last group finishes, in estimated seconds from the start.
  public var estimatedSeconds: Double
  /// The cost model's GFLOP/s per rank (0 for a custom model) and fused efficiency.
  public var gflopsPerRank: Double
  public var fusedEfficiency: Double

  /// The group rank `rank` belongs to; nil for an idle rank.
  public func group(ofRank rank: Int) -> RankGroup? {
    groups.first { $0.ranks.contains(rank) }
  }

  /// The plan of the adapter named `name`.
  public func adapter(named name: String) -> AdapterPlan? { adapters.first { $0.name == name } }
}

/// Contiguous ranks that train together: `firstRank ..< firstRank + rankCount`.
public struct RankGroup: Codable, Equatable, Sendable {
  /// Position among the groups, and the colour of `Communicator.split`.
  public var index: Int
  public var firstRank: Int
  public var rankCount: Int
  /// What the group trains, one run after another.
  public var runs: [GroupRun]

  public var ranks: Range<Int> { firstRank..<(firstRank + rankCount) }
  /// When the group's last run ends (estimated seconds).
  public var estimatedSeconds: Double { runs.last?.end ?? 0 }
}

/// Adapters that wait in the queue and train together once a group claims them.
public struct QueuedUnit: Codable, Equatable, Sendable {
  /// The adapters (one, for the `auto` adapters the queue holds).
  public var adapters: [String]
  /// The groups that may claim it: those that take queued work and whose rank count splits
  /// its adapters' batches.
  public var groups: [Int]
}

/// One thing a rank group trains: a fused set of adapters or a single adapter.
public struct GroupRun: Codable, Equatable, Sendable {
  /// `fused` (several adapters through one base pass), `separate` (one adapter on its own
  /// group) or `shared` (one adapter data-parallel on a group whose ranks it shares over
  /// time with other adapters, one after another).
  public var placement: Placement
  /// The fused group's name, if fused.
  public var fusedGroup: String?
  /// The adapters, in the group's order (a sweep's members in expansion order).
  public var adapters: [String]
  /// Taken from the queue when a group became free (rather than placed up front); in a plan,
  /// the estimate of which group takes it (at run time the first group free claims it).
  public var queued: Bool
  /// Estimated seconds from the job's start.
  public var start: Double
  public var end: Double
  /// Tokens trained, after successive halving stops members.
  public var tokens: Double
}

/// One adapter's place and estimates.
public struct AdapterPlan: Codable, Equatable, Sendable {
  public var name: String
  /// The rank group it trains on.
  public var group: Int
  public var rankCount: Int
  /// How it trains there (see ``GroupRun/placement``).
  public var placement: Placement
  /// Updates it is set to take (from `steps`, or `epochs` and the data's size; default 100).
  public var steps: Int
  /// Updates the plan counts for it: `steps`, or the rung successive halving is assumed to
  /// stop it at (members are assumed to survive in expansion order; which ones do is only
  /// known during the run, the total is the same).
  public var plannedSteps: Int
  /// Sequences per update (from `tokens_per_batch` and the mean sequence when set that way).
  public var batchSize: Double
  /// Mean tokens per sequence the plan assumes.
  public var tokensPerSequence: Double
  /// Tokens trained in `plannedSteps` updates.
  public var tokens: Double
  /// Estimated seconds from the job's start.
  public var start: Double
  public var end: Double
  /// In a fused group whose ranks it does not split over: the rank of the group (0-based
  /// within it) that trains it whole, at the start (members are placed again as others
  /// finish); nil when its batch is split over the group's ranks.
  public var groupRank: Int?
}
