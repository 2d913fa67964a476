import Foundation
import LoRACheckpoint
import LoRAComm
import LoRAModel
import LoRAServe
import LoRATraining

/// `rank: auto` ("start with a low rank and raise it if needed", the LoRA paper's advice):
/// the adapter trains at the ladder's first rank, then, while the validation loss improves
/// by more than `tolerance` (relative) over the previous rung, grows to the next rank with
/// its output unchanged (`AdapterResize`: new directions start at zero in B) and trains on.
/// Each rung is a full run of the plan's updates in `output/rank-R` (its own metrics,
/// checkpoints and report); the output folder gets the chosen rung's adapter, every rung's
/// decision in `metrics.jsonl` and `rank-search.json`, and a report of the evidence.
///
/// Every rank runs the same rungs: the trained adapter is identical on all ranks and the
/// validation loss is all-reduced, so each grows its own copy and all decide alike.
public struct RankSearch {
  /// One rung's evidence and what was decided after it.
  public struct Rung: Sendable, Codable, Equatable {
    public var rank: Int
    public var alpha: Double
    public var validationLoss: Double
    /// (previous loss − this loss) / previous loss; nil for the first rung.
    public var improvement: Double?
    /// "grow" (on to the next rank), "stop" (the improvement was not worth it: the previous
    /// rung is kept) or "top" (the ladder ends here: this rung is kept).
    public var decision: String
    public var updates: Int
    public var trainableParameters: Int

    public init(
      rank: Int, alpha: Double, validationLoss: Double, improvement: Double?, decision: String, updates: Int,
      trainableParameters: Int
    ) {
      (self.rank, self.alpha, self.validationLoss, self.improvement, self.decision) =
        (rank, alpha, validationLoss, improvement, decision)
      (self.updates, self.trainableParameters) = (updates, trainableParameters)
    }

    enum CodingKeys: String, CodingKey {
      case rank, alpha, improvement, decision, updates
      case validationLoss = "validation_loss"
      case trainableParameters = "trainable_parameters"
    }
  }

  /// The decision after a rung with validation loss `loss`: "stop" when it improved on
  /// `previous` by `tolerance` (relative) or less, else "top" on the ladder's last rank,
  /// else "grow".
  public static func decide(previous: Double?, loss: Double, tolerance: Double, last: Bool) -> String {
    if let previous, !((previous - loss) / previous > tolerance) { return "stop" }
    return last ? "top" : "grow"
  }

  public var plan: TrainingPlan
  public var loaded: LoadedModel
  public var communicator: any Communicator
  public var stop: StopRequest
  public var checkEvery: Int
  /// Where a job placed the search, and whether other rank groups report at the same time
  /// (each rung's `UnitRun` records them).
  public var placement: UnitPlacement?
  public var concurrent = false
  let emit: (RunEvent) -> Void

  public init(
    plan: TrainingPlan, loaded: LoadedModel, communicator: any Communicator, stop: StopRequest,
    checkEvery: Int, emit: @escaping (RunEvent) -> Void
  ) {
    (self.plan, self.loaded, self.communicator, self.stop, self.checkEvery, self.emit) =
      (plan, loaded, communicator, stop, checkEvery, emit)
  }

  /// The plan of the rung at `rank`: the ladder's first alpha scaled so the scale stays
  /// (alpha·r/r₀, or alpha·√(r/r₀) with rsLoRA), in `output/rank-R`.
  func rungPlan(_ rank: Int) -> TrainingPlan {
    var rung = plan
    let ratio = Double(rank) / Double(plan.lora.r)
    rung.lora.r = rank
    rung.lora.loraAlpha = plan.lora.loraAlpha * (plan.lora.useRslora ? ratio.squareRoot() : ratio)
    rung.output = plan.output.appendingPathComponent("rank-\(rank)")
    rung.rankLadder = nil
    rung.initAdapter = nil
    // Resuming the search resumes each rung from its own checkpoints; a rung an earlier run
    // finished is restored (not retrained) and gives its validation loss again.
    rung.resume = plan.resume == nil ? nil : "auto"
    return rung
  }

  /// Climbs the ladder; `.stopped` when a stop was requested during a rung.
  public func execute() throws -> (ending: FusedTrainer.Ending, rungs: [Rung]) {
    let ladder = plan.rankLadder ?? [plan.lora.r]
    var rungs: [Rung] = []
    var start: LoRAAdapter?
    for (index, rank) in ladder.enumerated() {
      let rungPlan = rungPlan(rank)
      var unit = UnitRun(
        plans: [rungPlan], loaded: loaded, communicator: communicator, fused: false, stop: stop,
        checkEvery: checkEvery, emit: emit)
      unit.initialAdapters = [start]
      (unit.placement, unit.concurrent) = (placement, concurrent)
      var trained: (adapter: LoRAAdapter, loss: Double, updates: Int)?
      unit.afterTraining = { group in
        let state = group.trainers[0]
        trained = (state.adapter, try state.validationLoss().loss, state.step)
      }
      let ending = try unit.execute()
      guard case .finished = ending else { return (ending, rungs) }
      guard let (adapter, loss, updates) = trained else {
        throw RunError("rank \(rank): the rung ended without a trained adapter")
      }
      let improvement = rungs.last.map { ($0.validationLoss - loss) / $0.validationLoss }
      let decision = Self.decide(
        previous: rungs.last?.validationLoss, loss: loss, tolerance: plan.rankTolerance,
        last: index == ladder.count - 1)
      let rung = Rung(
        rank: rank, alpha: rungPlan.lora.loraAlpha, validationLoss: loss, improvement: improvement,
        decision: decision, updates: updates, trainableParameters: adapter.trainableCount)
      rungs.append(rung)
      if communicator.rank == 0 {
        let ref = AdapterRef(
          name: plan.name, fused: false, totalSteps: plan.options.steps * ladder.count,
          output: plan.output.path,
          concurrent: concurrent)
        emit(.rankRung(ref, rung: rung))
      }
      guard decision == "grow" else { break }
      start = try AdapterResize.resized(
        adapter, model: loaded.model.config, to: .rank(ladder[index + 1]),
        seed: plan.options.seed &+ UInt64(index + 1)
      ).adapter
    }
    if communicator.rank == 0 { try finish(rungs) }
    return (.finished, rungs)
  }

  /// The rung kept: the last that grew, or the top one.
  public static func chosen(_ rungs: [Rung]) -> Rung? {
    rungs.last?.decision == "stop" ? rungs.dropLast().last : rungs.last
  }

  /// Copies the chosen rung's adapter into the output folder and writes the evidence:
  /// `metrics.jsonl` (one `rank_rung` line per rung), `rank-search.json` and `report.html`.
  func finish(_ rungs: [Rung]) throws {
    guard let kept = Self.chosen(rungs) else { return }
    let files = FileManager.default
    let from = plan.output.appendingPathComponent("rank-\(kept.rank)")
    for name in [
      "adapter_config.json", "adapter_model.safetensors", RouteSignature.fileName, "training_config.json",
    ]
    where files.fileExists(atPath: from.appendingPathComponent(name).path) {
      let target = plan.output.appendingPathComponent(name)
      try? files.removeItem(at: target)
      try files.copyItem(at: from.appendingPathComponent(name), to: target)
    }
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    var lines = ""
    var updates = 0
    for rung in rungs {
      updates += rung.updates
      var object = try JSONSerialization.jsonObject(with: encoder.encode(rung)) as? [String: Any] ?? [:]
      object["event"] = "rank_rung"
      object["step"] = updates
      object["kept"] = rung.rank == kept.rank
      lines += String(
        decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
      lines += "\n"
    }
    try Data(lines.utf8).write(to: plan.output.appendingPathComponent("metrics.jsonl"))
    let document = RankSearchDocument(
      ladder: plan.rankLadder ?? [], tolerance: plan.rankTolerance, rungs: rungs, chosenRank: kept.rank,
      updatesTrained: rungs.reduce(0) { $0 + $1.updates })
    encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
    try encoder.encode(document).write(to: plan.output.appendingPathComponent("rank-search.json"))
    try Data(RankSearchReport.html(document).utf8).write(
      to: plan.output.appendingPathComponent("report.html"))
  }
}

/// `rank-search.json`: the ladder, the tolerance, each rung and the rank kept.
public struct RankSearchDocument: Sendable, Codable, Equatable {
  public var ladder: [Int]
  public var tolerance: Double
  public var rungs: [RankSearch.Rung]
  public var chosenRank: Int
  /// Updates over all rungs (the compute spent, in updates of the plan's batch).
  public var updatesTrained: Int

  enum CodingKeys: String, CodingKey {
    case ladder, tolerance, rungs
    case chosenRank = "chosen_rank"
    case updatesTrained = "updates_trained"
  }
}
