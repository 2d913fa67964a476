import Dispatch
import LoRAComm
import LoRAKernels
import LoRAModel

/// Several adapters trained at once on the same ranks and the same frozen base (mLoRA's
/// BatchLoRA): at every update each adapter takes its own next batch, and micro-batch i of
/// every adapter is stacked into one batch, so every frozen product (the bulk of the work)
/// runs once over all their rows while each adapter's low-rank path and loss run on its own
/// rows. All adapters' parameters and gradients live in one allocation, so their gradients
/// leave in one all-reduce; each is scaled by its own batch's trained tokens.
///
/// On several ranks a member whose batch splits into whole micro-batches per rank is split
/// (each rank trains its slice, as data-parallel training does); any other member trains
/// whole on one rank (``shares(batches:ranks:)``), and the other ranks add zeros for it to
/// the all-reduce. So K adapters of one sequence each spread over the ranks: every rank
/// runs one pass over the rows it holds, and no rank splits a product it could run whole.
/// When members finish or retire, the rest are placed again.
///
/// Every adapter keeps its own data, options (rank, learning rate, schedule, batch,
/// steps), AdamW state, counters, checkpoints and validation: each member is an
/// `AdapterState` whose updates this class drives. A `Trainer` is a fused group of one, so
/// single and fused training run the same loop (`run`) and the same update.
public final class FusedTrainer {
  /// One adapter of a fused group.
  public struct Member: Sendable {
    public var config: LoRAConfig
    /// Seed of the adapter's initialisation (the options' seed drives data order and dropout).
    public var initialisationSeed: UInt64
    public var train: [Example]
    public var validation: [Example]
    public var options: TrainingOptions

    public init(
      config: LoRAConfig, initialisationSeed: UInt64, train: [Example], validation: [Example],
      options: TrainingOptions
    ) {
      self.config = config
      self.initialisationSeed = initialisationSeed
      self.train = train
      self.validation = validation
      self.options = options
    }
  }

  public let model: LlamaModel
  /// The members' training states, in member order (adapter k is `trainers[k].adapter`).
  public let trainers: [AdapterState]
  /// Every member's parameters and gradients: [Σ P_k] each, member k at `offsets[k]`.
  public let parameters: Tensor
  public let gradients: Tensor
  public let communicator: any Communicator
  let padID: Int32
  let longest: Int
  private let arena = TensorArena()
  private var buffers: [String: (LlamaActivations, LlamaGradients)] = [:]
  /// DPO's reference passes (the base alone, no backward), by sequences and length.
  var referenceBuffers: [String: LlamaActivations] = [:]
  private let maxRank: Int
  /// With `separateWaiting` (the default), a barrier before the all-reduce takes the time
  /// ranks wait for the slowest one (load imbalance), so `allreduceSeconds` is the transfer
  /// alone and `.waiting` the imbalance.
  public var separateWaiting = true
  /// The gradient all-reduce's time over this process's run, and the waiting before it.
  public private(set) var allreduceSeconds = 0.0
  public private(set) var waitingSeconds = 0.0
  /// This rank's time per phase over its updates (`PhaseTimes`): kernels charge it while an
  /// update runs; the rest of the update is `.elementwise`.
  public let clock = PhaseClock()
  /// Updates this process ran (the clock's count).
  public private(set) var timedUpdates = 0
  /// Bytes the gradient all-reduce moves per update.
  public var allreduceBytes: Int { communicator.size > 1 ? gradients.count * 4 : 0 }

  public convenience init(
    model: LlamaModel, members: [Member], padID: Int32,
    communicator: any Communicator = LocalCommunicator.single()
  ) throws {
    guard !members.isEmpty else { throw DataError.invalidOption("a fused group needs at least one adapter") }
    let counts = try members.map { try LoRAAdapter.parameterCount(config: $0.config, model: model.config) }
    let total = counts.reduce(0, +)
    let parameters = Tensor(zeros: [total])
    let gradients = Tensor(zeros: [total])
    var offset = 0
    var trainers: [AdapterState] = []
    let shares = Self.shares(
      batches: members.map { ($0.options.batchSize, $0.options.microBatch) }, ranks: communicator.size)
    for (member, (count, share)) in zip(members, zip(counts, shares)) {
      let adapter = try LoRAAdapter(
        config: member.config, model: model.config, seed: member.initialisationSeed,
        parameters: parameters.view(offset: offset, shape: [count]),
        gradients: gradients.view(offset: offset, shape: [count]))
      try model.initializeFromBase(adapter, seed: member.initialisationSeed)
      trainers.append(
        try AdapterState(
          model: model, adapter: adapter, train: member.train, validation: member.validation,
          options: member.options, padID: padID, communicator: communicator, share: share))
      offset += count
    }
    try self.init(
      model: model, states: trainers, parameters: parameters, gradients: gradients, padID: padID,
      communicator: communicator)
  }

  /// A group over `states`, whose adapters' parameters and gradients are `parameters` and
  /// `gradients` (all of them, member order, contiguous). Every rank starts from rank 0's
  /// parameters.
  init(
    model: LlamaModel, states trainers: [AdapterState], parameters: Tensor, gradients: Tensor, padID: Int32,
    communicator: any Communicator
  ) throws {
    self.model = model
    self.padID = padID
    self.communicator = communicator
    self.parameters = parameters
    self.gradients = gradients
    self.trainers = trainers
    placed = Array(trainers.indices)
    longest = trainers.map(\.longest).max() ?? 1
    maxRank = trainers.flatMap { $0.adapter.modules.map(\.rank) }.max() ?? 1
    // The largest stack this rank holds first: every smaller one fits into the same arena blocks.
    let largest = trainers.indices.filter {
      trainers[$0].share == .split || trainers[$0].share == .whole(owner: communicator.rank)
    }
    if !largest.isEmpty {
      _ = buffersFor(
        largest.map { ($0, trainers[$0].options.microBatch) },
        length: Batch.bucketLength(longest, longest: longest))
    }
    if communicator.size > 1 { try communicator.broadcast(parameters, root: 0) }
  }

  /// Where each member's batch goes on `ranks` ranks, given its (batch, micro-batch):
  /// split over every rank when it divides into whole micro-batches per rank, else whole on
  /// one rank — the one holding the fewest sequences so far, members with larger batches
  /// placed first (ties: the earlier member, the lower rank). The same on every rank.
  public static func shares(batches: [(batch: Int, micro: Int)], ranks: Int) -> [AdapterState.Share] {
    var load = [Int](repeating: 0, count: max(ranks, 1))
    var result = [AdapterState.Share](repeating: .split, count: batches.count)
    var whole: [Int] = []
    for (k, b) in batches.enumerated() {
      if ranks > 1 && b.batch % (b.micro * ranks) != 0 {
        whole.append(k)
      } else {
        for r in load.indices { load[r] += b.batch / max(ranks, 1) }
      }
    }
    let largestFirst = whole.sorted { a, b in
      batches[a].batch != batches[b].batch ? batches[a].batch > batches[b].batch : a < b
    }
    for k in largestFirst {
      let owner = load.indices.min { (load[$0], $0) < (load[$1], $1) }!
      result[k] = .whole(owner: owner)
      load[owner] += batches[k].batch
    }
    return result
  }

  /// Members stopped before their last update (successive halving).
  public private(set) var retired: Set<Int> = []

  /// Whether member k still has updates to take (before `limit`, when set).
  public func isActive(_ k: Int) -> Bool {
    !retired.contains(k) && trainers[k].step < min(trainers[k].options.steps, limit ?? .max)
  }

  /// The update `run(until:)` stops at, while it runs.
  var limit: Int?

  /// Stops member k where it is: it takes no more updates (every rank must retire the same).
  public func retire(_ k: Int) { retired.insert(k) }

  /// Whether every member has finished.
  public var finished: Bool { !trainers.indices.contains(where: isActive) }

  /// The members the current shares were computed for.
  private var placed: [Int] = []

  /// Places the `active` members over the ranks (``shares(batches:ranks:)``), so members
  /// that finish or retire leave no rank idle while others train. Moving a member between
  /// ranks changes none of its math: its data, micro-batches and dropout masks depend on
  /// the update alone, and every rank holds the same parameters and optimizer state.
  private func place(_ active: [Int]) {
    let shares = Self.shares(
      batches: active.map { (trainers[$0].options.batchSize, trainers[$0].options.microBatch) },
      ranks: communicator.size)
    for (k, share) in zip(active, shares) { trainers[k].share = share }
    placed = active
  }

  /// One update of every active member; their metrics by member index.
  public func update() throws -> [(member: Int, metrics: StepMetrics)] {
    try update(stopFlag: false).results
  }

  /// One update of every active member; `stopFlag` is this rank's stop request, and `stop`
  /// whether any rank asked (it travels with the losses' all-reduce).
  func update(stopFlag: Bool) throws -> (results: [(member: Int, metrics: StepMetrics)], stop: Bool) {
    let before = clock.times
    var outcome = try PhaseClock.$current.withValue(clock) {
      try clock.measure(.elementwise) { try timedUpdate(stopFlag: stopFlag) }
    }
    let phases = clock.times - before
    timedUpdates += 1
    for i in outcome.results.indices { outcome.results[i].metrics.phases = phases }
    return outcome
  }

  /// `update(stopFlag:)` with this rank's clock bound.
  private func timedUpdate(stopFlag: Bool) throws -> (
    results: [(member: Int, metrics: StepMetrics)], stop: Bool
  ) {
    let started = DispatchTime.now().uptimeNanoseconds
    let active = trainers.indices.filter(isActive)
    if active != placed { place(active) }
    let slices = try active.map { try trainers[$0].currentSlice() }
    // Every member's global trained tokens (and tokens), in one small all-reduce.
    var counts = active.indices.flatMap { trainers[active[$0]].counts(slices[$0]) }
    if communicator.size > 1 { try clock.measure(.allreduce) { try communicator.allreduce(&counts, .sum) } }
    let scales = active.indices.map { 1 / Float(max(counts[2 * $0], 1)) }
    gradients.zero()
    var lossSums = [Double](repeating: 0, count: active.count)
    // DPO members' metrics, as parts of their means (six each; none for the others).
    var preference = active.map { trainers[$0].options.dpo == nil ? [] : [Double](repeating: 0, count: 6) }
    let chunks = active.indices.map { trainers[active[$0]].microBatches(slices[$0]) }
    let rounds = chunks.map(\.count).max() ?? 0
    for round in 0..<rounds {
      // The members with a micro-batch in this round, stacked in member order.
      let present = active.indices.filter { round < chunks[$0].count }
      let stacked = present.flatMap { chunks[$0][round].map(\.example) }
      // Each member's rows: its sequences packed (padding-free), or one a row.
      let (rows, length) = Self.layout(
        present.map { chunks[$0][round] }, packs: present.map { trainers[active[$0]].packs },
        longest: longest)
      let (activations, grads) = buffersFor(
        present.indices.map { (active[present[$0]], rows[$0].count) }, length: length)
      let packed = present.contains { trainers[active[$0]].packs }
      let batch =
        packed
        ? Batch(rows: rows.flatMap { $0.map { $0.map(\.example) } }, length: length, padID: padID)
        : Batch(examples: stacked, length: length, padID: padID)
      activations.dropoutSeeds = present.map { trainers[active[$0]].dropoutSeed() }
      activations.spans = batch.spans
      // Per row, or per span when packed (a padding span: -1).
      let positions = rows.flatMap { $0.flatMap { $0.map(\.position) } }
      activations.sequenceNumbers =
        packed
        ? batch.spanExamples.map { $0 < 0 ? -1 : positions[$0] }
        : present.flatMap { chunks[$0][round].map(\.position) }
      // DPO members: their reference passes first, then their sequence weights in the backward.
      let dpo = try preferenceWeights(
        present.indices.map {
          PassSlot(member: active[present[$0]], pass: chunks[present[$0]][round], rows: rows[$0])
        },
        batch: batch, length: length, gradients: grads)
      model.forward(tokens: batch.tokens, activations: activations)
      let results = model.backward(
        targets: batch.targets, activations: activations, gradients: grads,
        gradientScales: present.map { scales[$0] }, sequenceWeights: dpo.weights)
      for (i, k) in present.enumerated() {
        if let part = dpo.parts.values[i] {
          lossSums[k] += part.loss * Double(trainers[active[k]].options.batchSize)
          preference[k] = zip(preference[k], part.metrics.values).map(+)
        } else {
          lossSums[k] += results[i].lossSum
        }
      }
    }
    // One all-reduce of every member's gradients, then one of the losses, DPO's metrics and
    // the stop flags.
    let metricsStart = lossSums.count
    var totals = lossSums + preference.flatMap { $0 } + [stopFlag ? 1 : 0]
    if communicator.size > 1 {
      try allreduceGradients()
      try clock.measure(.allreduce) { try communicator.allreduce(&totals, .sum) }
    }
    let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
    var offset = metricsStart
    let results = active.indices.map { i in
      let k = active[i]
      var metrics: DPOMetrics?
      if !preference[i].isEmpty {
        metrics = DPOMetrics()
        metrics?.values = Array(totals[offset..<offset + 6])
        offset += 6
      }
      return (
        k,
        clock.measure(.optimizer) {
          trainers[k].finishUpdate(
            lossSum: totals[i], trainedTotal: Int(counts[2 * i]), tokens: Int(counts[2 * i + 1]),
            seconds: seconds, preference: metrics)
        }
      )
    }
    return (results, totals[totals.count - 1] > 0)
  }

  /// The gradient all-reduce (sum, in place), timed; with `separateWaiting`, after a barrier.
  private func allreduceGradients() throws {
    if separateWaiting {
      let waitStarted = DispatchTime.now().uptimeNanoseconds
      try clock.measure(.waiting) { try communicator.barrier() }
      waitingSeconds += Double(DispatchTime.now().uptimeNanoseconds - waitStarted) / 1e9
    }
    let reduceStarted = DispatchTime.now().uptimeNanoseconds
    try clock.measure(.allreduce) { try communicator.allreduce(gradients, .sum) }
    allreduceSeconds += Double(DispatchTime.now().uptimeNanoseconds - reduceStarted) / 1e9
  }

  /// Floats of activation and gradient memory the fused stacks use.
  public var bufferFloats: Int { arena.capacity }

  /// Buffers for a stack of (member, sequences) slots at `length`.
  private func buffersFor(_ composition: [(member: Int, sequences: Int)], length: Int) -> (
    LlamaActivations, LlamaGradients
  ) {
    // A member's frozen adapter is in the key: a tree node's chain is attached after `init`
    // built the largest stack, whose buffers must not serve the node without it.
    let key =
      composition.map {
        "\($0.member):\($0.sequences)\(trainers[$0.member].frozen.map { "+\(ObjectIdentifier($0))" } ?? "")"
      }
      .joined(separator: ",") + "@\(length)"
    if let existing = buffers[key] { return existing }
    arena.reset()
    var slots: [LlamaActivations.Slot] = []
    var start = 0
    for (member, sequences) in composition {
      slots.append(
        .init(
          adapter: trainers[member].adapter, sequences: start..<start + sequences,
          frozen: trainers[member].frozen))
      start += sequences
    }
    // Packed rows longer than the run's longest sequence hold several: attention's scratch
    // needs no more than the longest (or a padding span of `Batch.bucket` rows).
    let packs = composition.contains { trainers[$0.member].packs }
    let sequence = packs ? max(longest, Batch.bucket) : nil
    let activations = LlamaActivations(
      config: model.config, batch: start, length: length, keepForBackward: true, slots: slots, arena: arena,
      checkpointed: trainers[composition[0].member].options.checkpointActivations, sequenceLength: sequence)
    let made = (
      activations,
      LlamaGradients(
        config: model.config, batch: start, length: activations.length, keys: activations.keyLength,
        maxRank: maxRank, arena: arena, sequenceLength: sequence)
    )
    buffers[key] = made
    return made
  }
}
