import ArgumentParser
import Foundation
import LoRACoordinator
import LoRAFormats
import LoRAKernels
import LoRAModel
import LoRARun

/// `swift-lora-dist plan`: how a job file would run on N ranks, before anything is loaded.
struct Plan: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Check a job file and show how its adapters would run on N ranks, with estimated times.",
    discussion: """
      Validates the job file (keys, values, sweeps, data files, output folders, rank groups), \
      reads only the model's configuration (not its weights) and prints the plan: the rank \
      groups (contiguous ranks that train together), the adapters on each and their placement \
      (fused, separate, shared), tokens and estimated start and end times. Adapters waiting in \
      the queue are taken at run time by whichever group becomes free first; the plan shows \
      where the estimate puts them. The memory line names the precision of the base and of \
      attention as a run on this machine would choose them (--base-precision and \
      --attention-precision over the job file's keys). Times come from \
      FLOPs per token and --gflops per rank (default 60: 120 GFLOP/s measured by `bench` on a \
      2-core machine, one core per rank); token counts are guessed from the data files (about \
      4 characters per token). docs/job-file.md describes the file and the planner.

      Examples:
        swift-lora-dist plan --jobs examples/jobs/demo.yaml -np 2
        swift-lora-dist plan --jobs jobs.yaml -np 8 --gflops 110 --json > plan.json
        swift-lora-dist plan --jobs jobs.yaml -np 4 --fused-efficiency 1.2
      """)

  @Option(help: "The job file (YAML; docs/job-file.md).") var jobs: String

  @Option(
    name: [.customLong("np", withSingleDash: true), .customLong("ranks")],
    help: "Ranks the job will run on (as mpirun -np).")
  var ranks: Int

  @Option(help: "Achieved training GFLOP/s per rank (default 60; 96 with a bf16 base).") var gflops: Double?
  @OptionGroup var precision: BasePrecisionOptions

  @Option(
    name: .customLong("fused-efficiency"),
    help: "Throughput factor of fused adapters over one after another (default 1).")
  var fusedEfficiency: Double = 1

  @Flag(help: "Print the plan as one JSON document.") var json = false

  func validate() throws {
    guard ranks >= 1 else { throw ValidationError("-np must be at least 1, got \(ranks)") }
    if let gflops, !(gflops.isFinite && gflops > 0) {
      throw ValidationError("--gflops must be positive, got \(gflops)")
    }
    guard fusedEfficiency.isFinite && fusedEfficiency > 0 else {
      throw ValidationError("--fused-efficiency must be positive, got \(fusedEfficiency)")
    }
  }

  func run() throws {
    let job = try JobFile.load(path: jobs)
    try job.validate(ranks: ranks)
    let config: LlamaConfig
    switch try ModelFiles.open(job.model) {
    case .gguf(let gguf): config = try LlamaConfig(gguf: gguf)
    case .huggingFace(let folder):
      config = try LlamaConfig(configJSON: URL(fileURLWithPath: folder).appendingPathComponent("config.json"))
    }
    var data: [String: DataEstimate] = [:]
    for adapter in job.adapters {
      for file in [adapter.settings.data, adapter.settings.validationData].compactMap({ $0 })
      where data[file] == nil {
        data[file] = try DataEstimate.measure(path: file)
      }
    }
    // The base's precision as this machine resolves it (auto: bf16 where the CPU has it).
    let stored = try (precision.basePrecision ?? job.basePrecision).resolve()
    // Attention's, as a run would choose it (bf16 where this machine has no kernel: refused).
    let attention = LlamaModel.attentionRoute(
      asked: try (precision.attentionPrecision ?? job.attentionPrecision).resolve(), base: stored)
    let cost = CostModel(
      model: config, gflopsPerRank: gflops ?? CostModel.defaultGFLOPsPerRank(stored),
      fusedEfficiency: fusedEfficiency)
    // A tree is planned level by level (a child starts once its parent's adapter exists).
    let levels = try job.levels.map { try Planner.plan($0, ranks: ranks, cost: cost, data: data) }
    let plan = levels[0]
    let memory = try levels.map {
      try MemoryEstimate.largest(in: $0, adapters: job.adapters, config: config, precision: stored)
    }.max { $0.estimate.perRankBytes < $1.estimate.perRankBytes }!

    // The parameter story: each adapter's trainable count, and the full fine-tune that the
    // largest run's first adapter stands in for.
    var trainable: [String: Int] = [:]
    for adapter in job.adapters {
      trainable[adapter.name] = try LoRAAdapter.trainableCount(
        config: adapter.settings.training.loraConfig, model: config)
    }
    let standIn = job.adapters.first { $0.name == memory.adapters.first } ?? job.adapters[0]
    let full = try FullFineTuneEstimate(
      config: config, lora: standIn.settings.training.loraConfig, sequences: standIn.microBatch,
      length: standIn.maxSeqLen)

    if json {
      let document = PlanDocument(
        jobs: jobs, model: job.model, plan: plan, levels: levels.count > 1 ? levels : nil,
        memory: memory.estimate, attentionPrecision: attention.rawValue,
        largestRun: memory.adapters, trainableParameters: trainable, fullFineTune: full)
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
      print(String(decoding: try encoder.encode(document), as: UTF8.self))
      return
    }
    if levels.count == 1 {
      print(Self.render(plan, job: job, config: config))
    } else {
      print(Self.render(tree: levels, job: job, config: config))
    }
    print(Self.render(memory.estimate, adapters: memory.adapters, attention: attention))
    let counts = trainable.values.sorted()
    let share = { (n: Int) in format(100 * Double(n) / Double(config.parameterCount), 3) }
    let range =
      counts.first == counts.last
      ? "\(grouped(counts[0])) (\(share(counts[0]))%)"
      : "\(grouped(counts.first!))–\(grouped(counts.last!)) (\(share(counts.first!))–\(share(counts.last!))%)"
    let m = memory.estimate
    print(
      "parameters: \(counts.count == 1 ? "the adapter trains" : "the adapters train") \(range) of the model's "
        + "\(grouped(config.parameterCount)); a full fine-tune at \(standIn.microBatch) × \(standIn.maxSeqLen) tokens "
        + "would hold about \(formatBytes(full.totalBytes)) per rank (estimate: fp32 weights, gradients and AdamW "
        + "\(formatBytes(full.weightBytes + full.gradientBytes + full.optimizerBytes)), activations "
        + "\(formatBytes(full.activationBytes))) where LoRA holds \(formatBytes(m.bufferBytes + m.adapterBytes)) "
        + "per rank beside the base in \(m.basePrecision) (\(formatBytes(m.baseBytes)), once per node)")
  }

  /// The memory lines: the base once per node, the largest rank's share.
  static func render(_ m: MemoryEstimate, adapters: [String], attention: Attention.Precision) -> String {
    "memory: base \(formatBytes(m.baseBytes)) in \(m.basePrecision) (attention in \(attention.rawValue)), once per "
      + "node; per rank up to "
      + "\(formatBytes(m.perRankBytes)) (buffers \(formatBytes(m.bufferBytes)) for \(adapters.joined(separator: ", ")), "
      + "adapter state \(formatBytes(m.adapterBytes)), process \(formatBytes(m.processBytes))); "
      + "a node with 2 ranks: \(formatBytes(m.perNode(ranks: 2)))"
  }

  /// The plan as a table: one row per adapter, grouped by rank group.
  static func render(_ plan: LoRACoordinator.Plan, job: JobFile, config: LlamaConfig) -> String {
    var lines: [String] = []
    lines.append(
      "plan for \(job.path): \(job.adapters.count) adapter(s) on \(plan.ranks) rank(s) in \(plan.groups.count) rank group(s)"
    )
    lines.append(header(plan, job: job, config: config))
    lines.append("")
    lines += table(plan)
    lines.append("estimated total time: \(duration(plan.estimatedSeconds))")
    return lines.joined(separator: "\n")
  }

  /// The model line.
  static func header(_ plan: LoRACoordinator.Plan, job: JobFile, config: LlamaConfig) -> String {
    "model: \(job.model) (\(config.architecture), \(config.layers) layers, width \(config.hiddenSize)); "
      + "\(format(plan.gflopsPerRank, 0)) GFLOP/s per rank, fused efficiency \(format(plan.fusedEfficiency, 2))"
  }

  /// One plan's rows by rank group, and its notes (idle ranks, halving, the queue).
  static func table(_ plan: LoRACoordinator.Plan) -> [String] {
    var lines: [String] = []
    var rows: [[String]] = [["group", "ranks", "adapter", "placement", "steps", "tokens", "start", "end"]]
    let byName = Dictionary(uniqueKeysWithValues: plan.adapters.map { ($0.name, $0) })
    for group in plan.groups {
      let ranks =
        group.rankCount == 1
        ? "\(group.firstRank)" : "\(group.firstRank)-\(group.firstRank + group.rankCount - 1)"
      var first = true
      for run in group.runs {
        for name in run.adapters {
          guard let a = byName[name] else { continue }
          let placement =
            run.fusedGroup.map {
              "fused (\($0))" + (a.groupRank.map { ", rank \(group.firstRank + $0)" } ?? "")
            }
            ?? run.placement.rawValue + (run.queued ? ", queued" : "")
          rows.append([
            first ? "\(group.index)" : "", first ? ranks : "", name, placement,
            a.plannedSteps == a.steps ? "\(a.steps)" : "\(a.plannedSteps) of \(a.steps)",
            grouped(Int(a.tokens.rounded())), duration(a.start), duration(a.end),
          ])
          first = false
        }
      }
    }
    lines += renderTable(rows, rightAligned: [4, 5, 6, 7])
    lines.append("")
    if !plan.idleRanks.isEmpty {
      lines.append(
        "idle ranks: \(plan.idleRanks.map(String.init).joined(separator: ", ")) (no group's batch splits over more ranks)"
      )
    }
    if plan.adapters.contains(where: { $0.plannedSteps != $0.steps }) {
      lines.append(
        "successive halving: 'N of M' steps assume members stop in expansion order; the total is the same")
    }
    lines.append("queue: \(plan.queue.joined(separator: ", "))")
    if !plan.queuedUnits.isEmpty {
      lines.append(
        "queued adapters (\(plan.queuedUnits.flatMap(\.adapters).joined(separator: ", "))) are taken at run time, "
          + "in queue order, by whichever group is free first; 'queued' rows show the estimate")
    }
    return lines
  }
}

/// What `plan --json` prints.
struct PlanDocument: Codable {
  var jobs: String
  var model: String
  var plan: LoRACoordinator.Plan
  /// A tree's plans, level by level (`plan` is the first); nil for a job without `parent:`.
  var levels: [LoRACoordinator.Plan]?
  /// The largest rank's memory, and the adapters of that run.
  var memory: MemoryEstimate
  /// "bf16" or "f32": attention's products, as the run would choose them on this machine.
  var attentionPrecision: String
  var largestRun: [String]
  /// Each adapter's trainable parameters.
  var trainableParameters: [String: Int]
  /// The full fine-tune the largest run's first adapter stands in for (an estimate).
  var fullFineTune: FullFineTuneEstimate
}
