import LoRAKernels
import LoRAModel
import LoRATraining

/// What training takes in memory: the base once per node (in its precision), and on every
/// rank the activation and gradient buffers of its largest pass, the adapters' parameters,
/// gradients and AdamW moments, and the process itself.
///
/// The buffers are counted exactly: the same buffer sets the trainer makes are built from a
/// counting arena (`TensorArena.counting()`), which hands out no memory.
public struct MemoryEstimate: Codable, Equatable, Sendable {
  /// "bf16" or "f32": how the base's matrices are held.
  public var basePrecision: String
  /// The base's weights, one copy per node.
  public var baseBytes: Int
  /// Per rank: activation and gradient buffers of the largest pass.
  public var bufferBytes: Int
  /// Per rank: the resident adapters' parameters, gradients and two AdamW moments.
  public var adapterBytes: Int
  /// Per rank: what a process takes beyond these (runtime, libraries, data, scratch).
  public var processBytes: Int

  /// The process figure: a `bench` process's peak resident memory less its base, buffers and
  /// adapter state, on the default model (docs/benchmarks.md).
  public static let defaultProcessBytes = 160 << 20

  /// Bytes on one rank, the base excluded.
  public var perRankBytes: Int { bufferBytes + adapterBytes + processBytes }

  /// Bytes on a node running `ranks` ranks that share one base.
  public func perNode(ranks: Int) -> Int { baseBytes + ranks * perRankBytes }

  /// The estimate for passes of `rows` sequences of `length` tokens through `adapters`
  /// (several: fused, each on its own sequences), with the base of `config` held in
  /// `precision`.
  public init(
    config c: LlamaConfig, precision: StoredPrecision, adapters: [(lora: LoRAConfig, sequences: Int)],
    length: Int,
    checkpointActivations: Bool = false
  ) throws {
    basePrecision = precision.rawValue
    baseBytes = LlamaWeights.heldBytes(c, tied: c.tiedEmbeddings, precision: precision)
    let made = try adapters.enumerated().map { i, entry in
      (try LoRAAdapter(config: entry.lora, model: c, seed: UInt64(i)), entry.sequences)
    }
    var start = 0
    let slots = made.map { adapter, sequences in
      defer { start += sequences }
      return LlamaActivations.Slot(adapter: adapter, sequences: start..<start + sequences)
    }
    let arena = TensorArena.counting()
    let activations = LlamaActivations(
      config: c, batch: start, length: length, keepForBackward: true, slots: slots, arena: arena,
      checkpointed: checkpointActivations)
    _ = LlamaGradients(
      config: c, batch: start, length: activations.length, keys: activations.keyLength,
      maxRank: made.flatMap { $0.0.modules.map(\.rank) }.max() ?? 1, arena: arena)
    bufferBytes = 4 * arena.capacity
    adapterBytes = made.reduce(0) { $0 + 4 * 4 * $1.0.parameterCount }
    processBytes = Self.defaultProcessBytes
  }
}

extension MemoryEstimate {
  /// The largest per-rank estimate over `plan`'s runs, with the adapters of that run: a fused
  /// run holds all its adapters and stacks their micro-batches (sequences of the longest
  /// `max_seq_len`); any other run holds one adapter at a time.
  public static func largest(
    in plan: Plan, adapters: [AdapterJob], config: LlamaConfig, precision: StoredPrecision
  ) throws -> (estimate: MemoryEstimate, adapters: [String]) {
    let byName = Dictionary(uniqueKeysWithValues: adapters.map { ($0.name, $0) })
    var candidates: [[AdapterJob]] = []
    for run in plan.groups.flatMap(\.runs) {
      let jobs = run.adapters.compactMap { byName[$0] }
      if run.placement == .fused { candidates.append(jobs) } else { candidates += jobs.map { [$0] } }
    }
    var best: (estimate: MemoryEstimate, adapters: [String])?
    for jobs in candidates where !jobs.isEmpty {
      let estimate = try MemoryEstimate(
        config: config, precision: precision,
        adapters: jobs.map { ($0.settings.training.loraConfig, $0.microBatch) },
        length: jobs.map(\.maxSeqLen).max() ?? 1)
      if estimate.perRankBytes > best?.estimate.perRankBytes ?? -1 { best = (estimate, jobs.map(\.name)) }
    }
    guard let best else {
      return (try MemoryEstimate(config: config, precision: precision, adapters: [], length: 1), [])
    }
    return best
  }
}
