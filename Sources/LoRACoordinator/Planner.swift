import Foundation
import LoRATraining
import LoRAYAML

/// Turns a job's adapters into a ``Plan`` for N ranks. Deterministic: the same adapters,
/// ranks, cost model and data estimates give the same plan.
///
/// 1. Units: the adapters of one fused group (a `group`, a sweep, or `placement: fused`)
///    form one unit; every other adapter is a unit of its own. The queue orders units by
///    priority (higher first), then by file order.
/// 2. Rank groups: each fused unit and each `separate` adapter gets a group; the `shared`
///    adapters get one group together, where they run one after another. More such groups
///    than ranks is an error. `auto` adapters each get a group of their own when the ranks
///    suffice; otherwise they are queued on as many one-rank-or-more groups as the ranks
///    left allow (or, with none left, on the groups there are), and a group that finishes
///    its up-front work takes the next queued adapter it can train, at run time. An `auto`
///    adapter with `ranks` is placed `separate`.
/// 3. Sizes: a group's `ranks` is honoured; the other groups split the remaining ranks
///    equally (⌊free / groups⌋), each shrunk to the largest size it keeps busy: one whose
///    rank count divides its adapters' `batch_size / micro_batch`, or for a fused group one
///    where each rank has sequences (adapters whose batch does not split train whole on
///    one rank each, see `FusedTrainer.shares`); ranks left over stay idle.
/// 4. Times: a unit on r ranks takes its tokens × seconds per token / r (plus validation
///    passes); a fused unit adds its adapters' costs per rank as they are placed (an update
///    takes as long as its busiest rank) and divides by the fused efficiency, adapters
///    leaving as they finish or as successive halving stops them.
public enum Planner {
  /// Rank groups and what starts on them, without times: what ``JobFile/validate(ranks:)`` checks.
  public struct Layout: Sendable {
    /// Per group: first rank, rank count, and the units placed on it up front.
    public var groups: [(firstRank: Int, rankCount: Int, adapters: [[String]])]
    /// Units waiting in the queue for a free group (adapter names per unit).
    public var queued: [[String]]
    public var idleRanks: [Int]
    var units: [[Unit]]
    var queuedUnits: [Unit]
    var queueOverAll: Bool
  }

  /// Adapters that train together.
  struct Unit: Sendable {
    enum Kind: Sendable, Equatable {
      case fused(String)
      case separate
      case shared
      case auto
    }
    var kind: Kind
    var adapters: [AdapterJob]
    var ranks: Int?
    var priority: Int
    var order: Int
    var names: [String] { adapters.map(\.name) }
    var origin: Origin { adapters[0].origin }
    /// Label of the unit in messages: the fused group's name or the adapter's.
    var label: String {
      if case .fused(let name) = kind { return "group '\(name)'" }
      return "'\(adapters[0].name)'"
    }
  }

  /// The units in queue order.
  static func units(_ adapters: [AdapterJob]) -> [Unit] {
    var units: [Unit] = []
    var groupIndex: [String: Int] = [:]
    for adapter in adapters.sorted(by: { $0.order < $1.order }) {
      if let group = adapter.group {
        if let i = groupIndex[group] {
          units[i].adapters.append(adapter)
          units[i].priority = max(units[i].priority, adapter.priority)
          units[i].ranks = units[i].ranks ?? adapter.ranks
          continue
        }
        groupIndex[group] = units.count
        units.append(
          Unit(
            kind: .fused(group), adapters: [adapter], ranks: adapter.ranks, priority: adapter.priority,
            order: adapter.order))
        continue
      }
      let kind: Unit.Kind =
        switch adapter.placement {
        case .separate: .separate
        case .shared: .shared
        // An adapter that asks for ranks gets its own group of that size.
        case .auto, .fused: adapter.ranks == nil ? .auto : .separate
        }
      units.append(
        Unit(
          kind: kind, adapters: [adapter], ranks: adapter.ranks, priority: adapter.priority,
          order: adapter.order))
    }
    return units.sorted { ($0.priority, -$0.order) > ($1.priority, -$1.order) }
  }

  /// The rank groups for `adapters` on `ranks` ranks; fails when they do not fit.
  public static func layout(_ adapters: [AdapterJob], ranks: Int) throws -> Layout {
    let file = adapters.first?.origin.file ?? "job"
    guard ranks >= 1 else {
      throw JobFileError(
        .tooFewRanks, file: file, line: nil, keyPath: nil, "the job needs at least 1 rank, got \(ranks)")
    }
    let queue = units(adapters)
    let autoUnits = queue.filter { $0.kind == .auto }

    // Groups placed up front, in queue order: fused and separate units one each, the shared
    // adapters one together.
    var groups: [(requested: Int?, units: [Unit], pool: Bool)] = []
    var sharedGroup: Int?
    for unit in queue {
      switch unit.kind {
      case .fused, .separate: groups.append((unit.ranks, [unit], false))
      case .shared:
        if let i = sharedGroup {
          groups[i].units.append(unit)
          if let r = unit.ranks { groups[i].requested = max(groups[i].requested ?? 0, r) }
        } else {
          sharedGroup = groups.count
          groups.append((unit.ranks, [unit], false))
        }
      case .auto: continue
      }
    }
    if groups.count > ranks {
      let first = groups[ranks].units[0]
      throw first.origin.error(
        .tooFewRanks,
        "more rank groups than ranks: the job needs \(groups.count) groups ("
          + groups.map { $0.units[0].label }.joined(separator: ", ") + ") but runs on \(ranks) rank(s); "
          + "run on more ranks, or fuse or share adapters (placement: fused/shared, or a common group)")
    }
    var asked = 0
    for group in groups {
      guard let r = group.requested else { continue }
      asked += r
      if asked > ranks {
        let unit = group.units.first { $0.ranks != nil } ?? group.units[0]
        throw unit.adapters[0].origin(of: "ranks").error(
          .tooFewRanks,
          "the rank groups ask for \(asked) ranks up to \(unit.label), but the job runs on \(ranks)")
      }
    }
    let free = ranks - asked
    let flexible = groups.filter { $0.requested == nil }.count
    if flexible > free {
      let unit = groups.last { $0.requested == nil }!.units[0]
      throw unit.origin.error(
        .tooFewRanks,
        "more rank groups than ranks: \(flexible) group(s) without a 'ranks' value but only \(free) rank(s) "
          + "left after the groups that ask for ranks")
    }
    var queued: [Unit] = []
    var queueOverAll = false
    let spare = free - flexible
    if !autoUnits.isEmpty {
      if autoUnits.count <= spare {
        groups += autoUnits.map { (nil, [$0], false) }
      } else if spare > 0 {
        // Pool groups for the queue; every group takes queued work once it is free, so no
        // rank idles while adapters wait.
        groups += (0..<spare).map { _ in (nil, [], true) }
        queued = autoUnits
        queueOverAll = true
      } else {
        queued = autoUnits
        queueOverAll = true
      }
    }

    // Sizes: explicit ones as asked, the rest split equally and shrunk to fit their batches.
    let flexibleCount = groups.filter { $0.requested == nil }.count
    let share = flexibleCount > 0 ? free / flexibleCount : 0
    var layout = Layout(
      groups: [], queued: queued.map(\.names), idleRanks: [], units: [], queuedUnits: queued,
      queueOverAll: queueOverAll)
    var next = 0
    for group in groups {
      let units = group.units + (group.pool ? queued : [])
      let size: Int
      if let r = group.requested {
        size = r
        for unit in units where !fits(unit, ranks: r) {
          if case .fused(let name) = unit.kind {
            throw unit.adapters[0].origin(of: "ranks").error(
              .invalidValue,
              "group '\(name)' cannot keep \(r) ranks busy: of its \(unit.adapters.count) adapter(s) none has a "
                + "batch_size that splits into micro_batch × \(r) ranks, and fewer than \(r) train whole on a rank"
            )
          }
          let adapter = unit.adapters.first { !fits($0, ranks: r) } ?? unit.adapters[0]
          throw adapter.origin(of: adapter.ranks != nil ? "ranks" : "batch_size").error(
            .invalidValue,
            "batch_size \(adapter.batchSize!) of '\(adapter.name)' is not a multiple of micro_batch "
              + "\(adapter.microBatch) × \(r) ranks")
        }
      } else {
        size = (1...max(share, 1)).reversed().first { r in units.allSatisfy { fits($0, ranks: r) } } ?? 1
      }
      layout.groups.append((next, size, group.units.map(\.names)))
      layout.units.append(group.units)
      next += size
    }
    layout.idleRanks = Array(next..<ranks)
    if queueOverAll {
      for unit in queued
      where !layout.groups.contains(where: { g in fits(unit, ranks: g.rankCount) }) {
        throw unit.adapters[0].origin(of: "batch_size").error(
          .invalidValue,
          "no rank group can train \(unit.label): its batch_size is not a multiple of micro_batch × any group's ranks"
        )
      }
    }
    return layout
  }

  /// Whether `unit` keeps `ranks` ranks busy. An adapter trained alone must split its batch
  /// over them in whole micro-batches; a fused group is placed as `FusedTrainer` places it
  /// (each adapter split when its batch allows, else whole on one rank) and fits when no
  /// rank is left without sequences.
  static func fits(_ unit: Unit, ranks: Int) -> Bool {
    guard case .fused = unit.kind else { return unit.adapters.allSatisfy { fits($0, ranks: ranks) } }
    // A batch set by tokens_per_batch is rounded to whole micro-batches on every rank.
    let shares = FusedTrainer.shares(
      batches: unit.adapters.map { ($0.batchSize ?? $0.microBatch * ranks, $0.microBatch) }, ranks: ranks)
    if shares.contains(.split) { return true }
    let owners = Set(
      shares.compactMap { share -> Int? in if case .whole(let owner) = share { owner } else { nil } })
    return owners.count == ranks
  }

  /// Whether `adapter`'s batch splits over `ranks` ranks in whole micro-batches.
  static func fits(_ adapter: AdapterJob, ranks: Int) -> Bool {
    guard let batch = adapter.batchSize else { return true }
    return batch % (adapter.microBatch * ranks) == 0
  }

  /// The plan for `adapters` on `ranks` ranks. `data` maps data files (absolute paths, as in
  /// ``AdapterJob/data``) to estimates; a file without one is assumed to fill every sequence.
  public static func plan(
    _ adapters: [AdapterJob], ranks: Int, cost: CostModel, data: [String: DataEstimate] = [:]
  ) throws -> Plan {
    let layout = try layout(adapters, ranks: ranks)
    var groups: [RankGroup] = []
    var adapterPlans: [String: AdapterPlan] = [:]
    var cursors: [Double] = []
    for (index, (first, size, _)) in layout.groups.enumerated() {
      var group = RankGroup(index: index, firstRank: first, rankCount: size, runs: [])
      var t = 0.0
      for unit in layout.units[index] {
        let (run, plans) = schedule(
          unit, ranks: size, group: index, start: t, queued: false, cost: cost, data: data)
        group.runs.append(run)
        for p in plans { adapterPlans[p.name] = p }
        t = run.end
      }
      groups.append(group)
      cursors.append(t)
    }
    // The queue, as estimated: each unit goes to the group expected free first (the lowest
    // index on a tie). At run time groups claim queued units as they become free.
    var queuedUnits: [QueuedUnit] = []
    for unit in layout.queuedUnits {
      let candidates = groups.indices.filter { i in
        (layout.queueOverAll || layout.units[i].isEmpty)
          && fits(unit, ranks: groups[i].rankCount)
      }
      queuedUnits.append(QueuedUnit(adapters: unit.names, groups: candidates))
      guard let index = candidates.min(by: { (cursors[$0], $0) < (cursors[$1], $1) }) else { continue }
      let (run, plans) = schedule(
        unit, ranks: groups[index].rankCount, group: index, start: cursors[index], queued: true, cost: cost,
        data: data)
      groups[index].runs.append(run)
      for p in plans { adapterPlans[p.name] = p }
      cursors[index] = run.end
    }
    return Plan(
      ranks: ranks, groups: groups, idleRanks: layout.idleRanks, queue: units(adapters).flatMap(\.names),
      queuedUnits: queuedUnits,
      adapters: adapters.sorted { $0.order < $1.order }.compactMap { adapterPlans[$0.name] },
      estimatedSeconds: cursors.max() ?? 0, gflopsPerRank: cost.gflopsPerRank,
      fusedEfficiency: cost.fusedEfficiency)
  }

  /// Steps, batch and tokens of one adapter, and its seconds per update on one rank.
  struct Work {
    var steps: Int
    var batch: Double
    var tokensPerSequence: Double
    var tokensPerStep: Double
    /// Seconds per update on one rank, validation passes spread over the updates.
    var secondsPerStep: Double
  }

  static func work(_ adapter: AdapterJob, cost: CostModel, data: [String: DataEstimate]) -> Work {
    let s = adapter.settings
    let maxLen = adapter.maxSeqLen
    let train = data[adapter.data]
    let mean = (s.pack ?? false) ? Double(maxLen) : train?.meanTokens(maxSeqLen: maxLen) ?? Double(maxLen)
    let batch = adapter.batchSize.map(Double.init) ?? Double(s.tokensPerBatch ?? 0) / max(mean, 1)
    let tokensPerStep = s.tokensPerBatch.map(Double.init) ?? batch * mean
    let fraction = s.validationFraction ?? 0
    var steps = s.steps ?? TrainingSettings.Defaults.steps
    if s.steps == nil, let epochs = s.epochs, let train {
      let examples = Double(train.examples) * (1 - fraction)
      steps = max(1, Int((epochs * examples / max(batch, 1)).rounded(.up)))
    }
    // `rank: auto` is costed as its whole ladder (an upper bound: it may stop early).
    steps *= s.ladder?.count ?? 1
    // Validation: every eval_every updates and at the end, over the validation set.
    var validationTokens = 0.0
    if let file = s.validationData, let estimate = data[file] {
      validationTokens =
        Double(estimate.examples) * (estimate.meanTokens(maxSeqLen: maxLen) ?? Double(maxLen))
    } else if fraction > 0, let train {
      validationTokens = Double(train.examples) * fraction * mean
    }
    let every = s.evalEvery ?? 0
    let passes = every > 0 ? (steps + every - 1) / every : 1
    let perToken = cost.secondsPerToken(adapter, Int(mean.rounded()))
    let evaluation = validationTokens * Double(passes) * perToken * cost.evaluationShare / Double(steps)
    return Work(
      steps: steps, batch: batch, tokensPerSequence: mean, tokensPerStep: tokensPerStep,
      secondsPerStep: tokensPerStep * perToken + evaluation)
  }

  /// One unit on `ranks` ranks from `start`: its run and its adapters' plans.
  static func schedule(
    _ unit: Unit, ranks: Int, group: Int, start: Double, queued: Bool, cost: CostModel,
    data: [String: DataEstimate]
  ) -> (GroupRun, [AdapterPlan]) {
    let works = unit.adapters.map { work($0, cost: cost, data: data) }
    // Where each adapter stops: its steps, or a rung of its sweep's successive halving.
    let stops = unit.adapters.enumerated().map { i, adapter -> Int in
      guard let member = adapter.sweep, let halving = member.successiveHalving else { return works[i].steps }
      let survivors = halving.survivors(of: member.count)
      for (rung, alive) in zip(halving.rungs, survivors) where member.index >= alive { return rung }
      return works[i].steps
    }
    let efficiency = unit.adapters.count > 1 ? cost.fusedEfficiency : 1
    // Where each adapter's sequences go: a fused group places the adapters still training
    // as FusedTrainer does; an adapter alone splits over the ranks.
    var isFused = false
    if case .fused = unit.kind { isFused = true }
    var shares = [Trainer.Share](repeating: .split, count: unit.adapters.count)
    var firstShares = shares
    var ends = Array(repeating: start, count: unit.adapters.count)
    var t = start
    var previous = 0
    for stop in Set(stops).sorted() {
      let alive = stops.indices.filter { stops[$0] > previous }
      if isFused {
        let placed = FusedTrainer.shares(
          batches: alive.map { i in
            let adapter = unit.adapters[i]
            return (adapter.batchSize ?? adapter.microBatch * ranks, adapter.microBatch)
          }, ranks: ranks)
        for (i, share) in zip(alive, placed) { shares[i] = share }
        if previous == 0 { firstShares = shares }
      }
      // An update takes as long as its busiest rank.
      var load = [Double](repeating: 0, count: ranks)
      for i in alive {
        switch shares[i] {
        case .split: for r in load.indices { load[r] += works[i].secondsPerStep / Double(ranks) }
        case .whole(let owner): load[owner] += works[i].secondsPerStep
        }
      }
      let perStep = (load.max() ?? 0) / efficiency
      t += Double(stop - previous) * perStep
      for i in stops.indices where stops[i] == stop { ends[i] = t }
      previous = stop
    }
    let placement: Placement =
      switch unit.kind {
      case .fused: .fused
      case .separate: .separate
      case .shared: .shared
      case .auto: queued ? .shared : .separate
      }
    var fusedGroup: String?
    if case .fused(let name) = unit.kind { fusedGroup = name }
    let plans = unit.adapters.enumerated().map { i, adapter in
      AdapterPlan(
        name: adapter.name, group: group, rankCount: ranks, placement: placement, steps: works[i].steps,
        plannedSteps: stops[i], batchSize: works[i].batch, tokensPerSequence: works[i].tokensPerSequence,
        tokens: Double(stops[i]) * works[i].tokensPerStep, start: start, end: ends[i],
        groupRank: { if case .whole(let owner) = firstShares[i], ranks > 1 { owner } else { nil } }())
    }
    let run = GroupRun(
      placement: placement, fusedGroup: fusedGroup, adapters: unit.names, queued: queued, start: start,
      end: t,
      tokens: plans.reduce(0) { $0 + $1.tokens })
    return (run, plans)
  }
}
