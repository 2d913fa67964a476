import ArgumentParser
import Foundation
import LoRAComm
import LoRACoordinator
import LoRAFormats
import LoRAKernels
import LoRAModel
import LoRARun
import LoRATraining

/// `swift-lora-dist bench`: one training-step configuration, timed after warm-up.
struct Bench: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Time LoRA training steps and report tokens/s, GFLOP/s against the sgemm peak, and memory.",
    discussion: """
      Runs --warmup untimed and --steps timed updates (forward, backward, AdamW) on random \
      tokens with every position trained, then measures sgemm on a model-sized product with \
      the same threads. Model FLOPs per token = 4·(linear parameters incl. the output head) \
      + 12·L·T·H·HS (attention) + 6·Σ r·(IN+OUT) (LoRA); see docs/benchmarks.md. Under \
      mpirun the batch is the global one, split over the ranks; the figures then include \
      the gradient all-reduce (bytes and share of the step) and every rank's memory. Every \
      rank's time per phase follows (frozen products, output head, loss, LoRA, attention, \
      element-wise, optimizer, waiting for the slowest rank, all-reduce). --min-seq draws \
      variable lengths, so --balance can be compared.

      Examples:
        swift-lora-dist bench --model model.gguf
        swift-lora-dist bench --model model.gguf --targets all-linear --threads 1 --json
        swift-lora-dist bench --model model.gguf --targets all-linear --use-dora
        swift-lora-dist bench --model model.gguf --adapters 4 --batch 1 --seq 256
        mpirun -np 2 swift-lora-dist bench --model model.gguf --threads 1
        swift-lora-dist bench --model model.gguf --local-ranks 2 --threads 1
        swift-lora-dist bench --model model.gguf --local-ranks 2 --threads 1 --batch 8 --min-seq 16 --balance sequences
        swift-lora-dist bench --model model.gguf --batch 8 --min-seq 16 --no-padding-free
        swift-lora-dist bench --model model.gguf --objective dpo --precompute-reference
        swift-lora-dist bench --model model.gguf --adapters 4 --batch 1 --local-ranks 2 --threads 1
      """)

  @OptionGroup var base: BaseModelOptions
  @OptionGroup var precision: BasePrecisionOptions
  @Option(help: "Sequences per step (over all ranks).") var batch = 4
  @Option(help: "Tokens per sequence.") var seq = 256
  @Option(
    name: .customLong("min-seq"),
    help:
      "Draw each sequence's length from --min-seq to --seq (seeded, the same every step): variable-length batches, split by --balance."
  )
  var minSeq: Int?
  @Option(
    help: "How the batch is divided over ranks and passes: tokens (default) or sequences (train's --balance)."
  )
  var balance = BatchBalance.tokens.rawValue
  @Flag(
    name: .customLong("padding-free"), inversion: .prefixedNo,
    help:
      "Lay each pass's sequences end to end, each attending only to itself (train's --padding-free; the default)."
  )
  var paddingFree: Bool?
  @Option(help: "LoRA targets, comma-separated, or all-linear.") var targets = "q_proj,v_proj"
  @Option(help: "LoRA rank.") var rank = 8
  @Option(help: "LoRA alpha.") var alpha: Double = 16
  @Flag(name: .customLong("use-dora"), help: "DoRA: a trained magnitude per output row (use_dora).")
  var useDora = false
  @Option(name: .customLong("init"), help: "A's initialisation: default, gaussian, pissa or pissa_niter_N.")
  var initWeights = "default"
  @OptionGroup var threading: ThreadOptions
  @Option(help: "Timed steps.") var steps = 5
  @Option(
    help:
      "sft, or dpo: the batch's sequences as chosen/rejected pairs (half of each untrained prompt), with DPO's reference pass."
  )
  var objective = "sft"
  @Flag(
    name: .customLong("precompute-reference"),
    help:
      "With --objective dpo: score the reference once before the warm-up (train's --precompute-reference), so the timed updates run no reference pass."
  )
  var precomputeReference = false
  @Option(help: "Untimed warm-up steps.") var warmup = 1
  @Flag(
    name: .customLong("checkpoint-activations"),
    help: "Recompute activations layer by layer in the backward pass.")
  var checkpointActivations = false
  @Option(
    help:
      "Train K adapters: fused (micro-batches stacked into one pass) against sequential (one after another); --batch is per adapter. With --local-ranks the fused group spreads over the ranks, and each adapter alone runs on the same cores."
  )
  var adapters: Int?
  @OptionGroup var ranks: LocalRankOptions
  @OptionGroup var output: JSONOutputOptions

  func validate() throws {
    guard batch >= 1, seq >= 2, steps >= 1, warmup >= 0 else {
      throw ValidationError("--batch ≥ 1, --seq ≥ 2, --steps ≥ 1 and --warmup ≥ 0 are needed")
    }
    if let minSeq, !(2...seq).contains(minSeq) {
      throw ValidationError("--min-seq \(minSeq) must be from 2 to --seq (\(seq))")
    }
    guard BatchBalance(rawValue: balance) != nil else {
      throw ValidationError("--balance is tokens or sequences, got '\(balance)'")
    }
  }

  func run() throws {
    if let adapters {
      guard adapters >= 1 else { throw ValidationError("--adapters must be at least 1") }
      let results: [FusedBenchResult?]
      if let localRanks = ranks.localRanks, localRanks > 1 {
        let command = UncheckedSendable(self)
        results = try Ranks.threads(localRanks, threads: threading.threads, pin: ranks.pin ?? true) { comm in
          try command.value.measureFused(adapters, comm)
        }
      } else {
        results = [try measureFused(adapters, LocalCommunicator.single())]
      }
      if let result = results[0] { try show(result, text: result.text) }
      return
    }
    let result: BenchResult?
    if let localRanks = ranks.localRanks, localRanks > 1 {
      let command = UncheckedSendable(self)
      result = try Ranks.threads(localRanks, threads: threading.threads, pin: ranks.pin ?? true) { comm in
        try command.value.measure(comm)
      }[0]
    } else {
      result = try Ranks.run { comm in
        Ranks.checkThreads(threading.threads ?? BLAS.threads, world: comm)
        return try measure(comm)
      }
    }
    guard let result else { return }
    try show(result, text: result.text)
  }

  /// One JSON object with `--json`, else the result's text.
  func show(_ result: some Encodable, text: String) throws {
    if output.json {
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.sortedKeys]
      print(String(decoding: try encoder.encode(result), as: UTF8.self))
    } else {
      print(text)
    }
  }

  /// The measurement on one rank; the result on rank 0, nil elsewhere.
  func measure(_ comm: any Communicator) throws -> BenchResult? {
    threading.apply()
    guard batch % comm.size == 0 else {
      throw ValidationError("--batch \(batch) must be divisible by the \(comm.size) ranks")
    }
    guard objective == "sft" || (objective == "dpo" && batch % (2 * comm.size) == 0) else {
      throw ValidationError(
        "--objective is sft or dpo (with --batch a multiple of 2 × ranks), got \(objective)")
    }
    let dpo = objective == "dpo"
    guard dpo || !precomputeReference else {
      throw ValidationError("--precompute-reference applies to --objective dpo")
    }
    let sharing = try NUMACopies.sharing(
      comm, perDomain: ranks.numaCopies, topology: .current(), cpus: ThreadPlacement.currentThreadCPUs())
    if let note = sharing.note, comm.rank == 0 { Ranks.note(note) }
    let llama = try LoadedModel.weights(
      ModelFiles.open(base.model), communicator: sharing.communicator, precision: precision.value
    ).model
    try precision.apply(to: llama)
    let c = llama.config
    let lora = LoRAConfig(
      r: rank, loraAlpha: alpha, targetModules: targets.split(separator: ",").map(String.init),
      initialization: initWeights, useDora: useDora)
    let adapter = try LoRAAdapter(config: lora, model: c, seed: 0)
    var random = SeededRandom(seed: 1)
    // Variable lengths: a new batch every update (in order), so the timing spans several draws.
    let examples = (0..<(minSeq == nil ? batch : batch * (warmup + steps))).map { _ in
      let n = minSeq.map { $0 + Int(random.next() % UInt64(seq - $0 + 1)) } ?? seq
      return Example(
        tokens: (0..<n).map { _ in Int32(random.next() % UInt64(c.vocabularySize)) },
        trained: dpo
          ? Array(repeating: false, count: n / 2) + Array(repeating: true, count: n - n / 2)
          : [false] + Array(repeating: true, count: n - 1))
    }
    // DPO counts pairs: the same sequences, half as many units.
    let units = dpo ? batch / 2 : batch
    let trainer = try Trainer(
      model: llama, adapter: adapter, train: examples, validation: [],
      options: TrainingOptions(
        steps: warmup + steps, batchSize: units, microBatch: units / comm.size, learningRate: 1e-4,
        schedule: .constant, shuffle: false, checkpointActivations: checkpointActivations,
        dpo: dpo ? DPOLoss() : nil, balance: BatchBalance(rawValue: balance) ?? .tokens,
        paddingFree: paddingFree ?? true, precomputeReference: precomputeReference),
      padID: 0, communicator: comm)
    trainer.separateWaiting = true
    if dpo && precomputeReference { _ = try trainer.state.scoreReference() }
    for _ in 0..<warmup { _ = try trainer.update() }
    let reduceBefore = trainer.allreduceSeconds
    let waitBefore = trainer.waitingSeconds
    let phasesBefore = trainer.group.clock.times
    var seconds = 0.0
    for _ in 0..<steps { seconds += try trainer.update().seconds }
    let perStep = seconds / Double(steps)
    let phases = try trainer.group.rankPhases(since: phasesBefore).map { $0.divided(by: Double(steps)) }
    let timed = minSeq == nil ? examples : Array(examples.suffix(batch * steps))
    let timedTokens = timed.reduce(0) { $0 + $1.tokens.count }
    let tokensPerStep = minSeq == nil ? timedTokens : timedTokens / steps
    // Model FLOPs per token, averaged over the sequences' lengths (attention grows with each's).
    let flops =
      timed.reduce(0.0) {
        $0 + Double($1.tokens.count)
          * CostModel.flopsPerToken(c, lora: adapter.config, length: $1.tokens.count)
      } / Double(timedTokens)
    let achieved = flops * Double(tokensPerStep) / perStep / 1e9
    // The machine's peak in this configuration: every rank's sgemm at once, summed.
    try comm.barrier()
    let bf16 = llama.weights.precision == .bf16
    var peaks = [
      GEMM.measure(minimumSeconds: 1).gflops, bf16 ? try BF16Products.measure(minimumSeconds: 1).gflops : 0,
    ]
    try comm.allreduce(&peaks, .sum)
    // Thread-ranks are one process: its memory once, not once per rank.
    let threadRanks = comm.backend == "local" && comm.size > 1
    let memory =
      threadRanks
      ? [(peak: ResidentMemory.peakBytes(), proportional: ResidentMemory.proportionalBytes())]
      : try ResidentMemory.perRank(comm)
    guard comm.rank == 0 else { return nil }
    let peak = peaks[0]
    let bf16Peak = bf16 ? peaks[1] : nil
    return BenchResult(
      model: base.model, objective: objective + (precomputeReference ? ", reference precomputed" : ""),
      dora: useDora, initialization: initWeights, batch: batch,
      seq: seq, minSeq: minSeq, balance: balance, paddingFree: paddingFree ?? true, targets: targets,
      rank: rank,
      threads: BLAS.threads,
      ranks: comm.size, threadRanks: threadRanks, blasCore: BLAS.coreName,
      trainableParameters: adapter.trainableCount, secondsPerStep: perStep,
      tokensPerSecond: Double(tokensPerStep) / perStep,
      gflopPerToken: flops / 1e9, achievedGFLOPs: achieved, sgemmPeakGFLOPs: peak,
      fractionOfPeak: achieved / peak, basePrecision: llama.weights.precision.rawValue,
      attentionPrecision: llama.attentionRoute.rawValue,
      bf16Route: bf16 ? BF16Products.route.rawValue : nil, bf16PeakGFLOPs: bf16Peak,
      fractionOfBF16Peak: bf16Peak.map { achieved / $0 }, baseMB: Double(llama.weights.heldBytes) / 1_048_576,
      peakResidentMB: Double(ResidentMemory.peakBytes()) / 1_048_576,
      gradientBytes: adapter.parameterCount * 4,
      bufferMB: Double(trainer.bufferFloats * 4) / 1_048_576,
      allreduceFraction: (trainer.allreduceSeconds - reduceBefore) / seconds,
      waitingFraction: (trainer.waitingSeconds - waitBefore) / seconds, phases: phases,
      rankPeakResidentMB: memory.map { Double($0.peak) / 1_048_576 },
      rankProportionalMB: memory.map { Double($0.proportional) / 1_048_576 })
  }
}

extension Bench {
  /// K adapters (different seeds) on the same random tokens: trained one after another,
  /// then fused; tokens/s of each and their ratio. On `comm`'s ranks (thread-ranks with
  /// `--local-ranks`) the fused group spreads as `FusedTrainer` places it; each adapter
  /// trained alone gets the same cores: data-parallel over the ranks when its batch splits
  /// over them, else on rank 0 alone with every rank's kernel threads. The result on rank 0.
  func measureFused(_ adapters: Int, _ comm: any Communicator) throws -> FusedBenchResult? {
    let perRank = threading.threads ?? BLAS.threads
    BLAS.threads = perRank
    let llama = try LoadedModel.weights(
      ModelFiles.open(base.model), communicator: comm, precision: precision.value
    ).model
    try precision.apply(to: llama)
    let c = llama.config
    var random = SeededRandom(seed: 1)
    let examples = (0..<batch).map { _ in
      Example(
        tokens: (0..<seq).map { _ in Int32(random.next() % UInt64(c.vocabularySize)) },
        trained: [false] + Array(repeating: true, count: seq - 1))
    }
    let splits = batch % comm.size == 0
    let options = TrainingOptions(
      steps: warmup + steps, batchSize: batch, microBatch: splits ? batch / comm.size : batch,
      learningRate: 1e-4, schedule: .constant, shuffle: false, checkpointActivations: checkpointActivations)
    let members = (0..<adapters).map { k in
      FusedTrainer.Member(
        config: LoRAConfig(
          r: rank, loraAlpha: alpha, targetModules: targets.split(separator: ",").map(String.init)),
        initialisationSeed: UInt64(k), train: examples, validation: [], options: options)
    }
    // Sequential: one adapter after another, each with the usual single-adapter trainer;
    // fused: one FusedTrainer. The two are timed in alternation, step by step, so a drift of
    // the machine's speed (this VM's is ±20% within minutes) affects both alike.
    let sequentialComm: any Communicator = splits ? comm : LocalCommunicator.single()
    let sequential =
      splits || comm.rank == 0
      ? try members.map { member in
        try Trainer(
          model: llama,
          adapter: try LoRAAdapter(config: member.config, model: c, seed: member.initialisationSeed),
          train: examples, validation: [], options: options, padID: 0, communicator: sequentialComm)
      } : []
    let sequentialBuffers = sequential.map(\.bufferFloats).max() ?? 0
    let fused = try FusedTrainer(model: llama, members: members, padID: 0, communicator: comm)
    /// Every adapter alone, one after another; its seconds (on rank 0).
    func runSequential() throws -> Double {
      var seconds = 0.0
      if !splits && comm.rank == 0 { BLAS.threads = perRank * comm.size }
      for trainer in sequential { seconds += try trainer.update().seconds }
      if !splits && comm.rank == 0 { BLAS.threads = perRank }
      try comm.barrier()
      return seconds
    }
    func runFused() throws -> Double {
      try comm.barrier()
      let started = Date()
      _ = try fused.update()
      return Date().timeIntervalSince(started)
    }
    for _ in 0..<warmup {
      _ = try runSequential()
      _ = try runFused()
    }
    var sequentialSeconds = 0.0
    var fusedSeconds = 0.0
    for _ in 0..<steps {
      sequentialSeconds += try runSequential()
      fusedSeconds += try runFused()
    }
    guard comm.rank == 0 else { return nil }
    let tokens = Double(adapters * steps * batch * seq)
    return FusedBenchResult(
      model: base.model, adapters: adapters, batch: batch, seq: seq, targets: targets, rank: rank,
      threads: perRank, ranks: comm.size, sequentialRanks: splits ? comm.size : 1,
      sequentialThreads: splits ? perRank : perRank * comm.size,
      sequentialTokensPerSecond: tokens / sequentialSeconds,
      fusedTokensPerSecond: tokens / fusedSeconds, fusedOverSequential: sequentialSeconds / fusedSeconds,
      sequentialBufferMB: Double(sequentialBuffers * 4) / 1_048_576,
      fusedBufferMB: Double(fused.bufferFloats * 4) / 1_048_576,
      peakResidentMB: Double(ResidentMemory.peakBytes()) / 1_048_576)
  }
}
