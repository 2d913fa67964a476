import ArgumentParser
import Foundation
import LoRAComm
import LoRACoordinator
import LoRAFormats
import LoRAKernels
import LoRAModel
import LoRARun
import LoRATraining

/// `swift-lora-dist train`: fine-tune one LoRA adapter in this process.
struct Train: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Fine-tune a LoRA adapter on JSON Lines data and save it as a PEFT adapter folder.",
    discussion: """
      Data lines are {"text"}, {"prompt", "completion"}, {"messages": [{"role", "content"}]} \
      (ChatML, loss on assistant turns) or {"input_ids"}. Every flag also has a key in a YAML \
      --config file (the flag's name in snake_case; flags win). The output folder receives \
      adapter_config.json + adapter_model.safetensors (PEFT), metrics.jsonl, report.html and \
      checkpoints/step-N.sldckpt (resumable, docs/checkpoint-format.md). A run that stopped \
      continues with the same command plus --resume OUTPUT.

      Examples:
        swift-lora-dist train --model model.gguf --data train.jsonl --output out/my-adapter
        swift-lora-dist train --config run.yaml --steps 500
        swift-lora-dist train --config run.yaml --resume out/my-adapter
        mpirun -np 2 swift-lora-dist train --jobs examples/jobs/demo.yaml
        mpirun -np 4 swift-lora-dist train --config run.yaml --threads 1 --resume auto
        swift-lora-dist train --model model.gguf --data chat.jsonl --validation-fraction 0.05 \
          --targets all-linear --rank 16 --alpha 32 --lr 1e-4 --schedule cosine --warmup 20 --output out/chat
        swift-lora-dist train --model model.gguf --data train.jsonl --prefix-tokens 16 --output out/lora-prefix
        swift-lora-dist train --model model.gguf --data train.jsonl --targets none --prompt-tokens 20 \
          --lr 3e-2 --output out/prompt
        swift-lora-dist train --model model.gguf --data pairs.jsonl --objective dpo --beta 0.1 \
          --validation-fraction 0.1 --lr 5e-5 --output out/dpo
        swift-lora-dist train --model model.gguf --data pairs.jsonl --objective dpo --epochs 3 \
          --precompute-reference --output out/dpo-3
        swift-lora-dist train --model model.gguf --data train.jsonl --loraplus-lr-ratio 16 --output out/plus
        swift-lora-dist train --model model.gguf --data train.jsonl --targets all-linear --use-dora --output out/dora
        swift-lora-dist train --model model.gguf --data train.jsonl --init pissa_niter_4 --output out/pissa
        swift-lora-dist train --model model.gguf --data train.jsonl --no-padding-free --balance sequences --output out/padded
      """)

  @Option(help: "A YAML file of options (keys: the flags in snake_case).") var config: String?
  @Option(
    help:
      "A job file of several adapters (docs/job-file.md): trained shared, separate or fused as `plan` shows.")
  var jobs: String?
  @Option(help: "Base model: GGUF file or Hugging Face folder.") var model: String?
  @OptionGroup var precision: BasePrecisionOptions
  @Option(help: "Training data (JSON Lines).") var data: String?
  @Option(name: .customLong("validation-data"), help: "Validation data (JSON Lines).") var validationData:
    String?
  @Option(name: .customLong("validation-fraction"), help: "Hold out this fraction of --data for validation.")
  var validationFraction: Double?
  @Option(help: "Output folder for the adapter, metrics and report.") var output: String?
  @Option(help: "Data format: auto, text, prompt_completion, messages, input_ids.") var format: String?
  @Option(
    name: .customLong("max-seq-len"),
    help: "Longest sequence in tokens; longer ones are truncated (default 512).")
  var maxSeqLen: Int?
  @Option(
    name: .customLong("chat-format"),
    help:
      "How messages are rendered: chatml, llama2, mistral, zephyr, llama3 (default: the model's template).")
  var chatFormat: String?
  @Flag(name: .customLong("train-on-prompt"), help: "Also train on prompt and user tokens.")
  var trainOnPrompt = false
  @Flag(help: "Pack examples into full-length sequences.") var pack = false
  @Flag(name: .customLong("skip-bad-lines"), help: "Count and skip malformed lines instead of stopping.")
  var skipBadLines = false
  @Flag(name: .customLong("no-eos"), help: "Do not append the end-of-sequence token to text and completions.")
  var noEOS = false
  @Option(
    help:
      "Comma-separated modules (q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj) or all-linear (default q_proj,v_proj)."
  )
  var targets: String?
  @Option(help: "LoRA rank r (default 8), or auto: climb --rank-ladder while validation improves.")
  var rank: RankArgument?
  @Option(
    name: .customLong("rank-ladder"),
    help: "Comma-separated ranks for --rank auto (default 2,4,8,16,32).")
  var rankLadder: String?
  @Option(
    name: .customLong("rank-tolerance"),
    help: "Least relative validation-loss improvement that earns the next rank (default 0.01).")
  var rankTolerance: Double?
  @Option(help: "LoRA alpha (default 16).") var alpha: Double?
  @Option(help: "LoRA dropout (default 0).") var dropout: Double?
  @Flag(help: "Scale by alpha/√r (rsLoRA) instead of alpha/r.") var rslora = false
  @Flag(
    name: .customLong("use-dora"),
    help: "DoRA: also train a magnitude per output row of each adapted linear (PEFT's use_dora).")
  var useDora = false
  @Option(help: "Comma-separated layer indices to adapt (default all).") var layers: String?
  @Option(
    name: .customLong("init"),
    help:
      "A's initialisation: default (Kaiming-uniform), gaussian, or PiSSA's pissa / pissa_niter_N (A and B from W0's top-r SVD)."
  )
  var initWeights: String?
  @Option(
    name: .customLong("init-adapter"),
    help: "Start A and B from this adapter (same targets, ranks and scales; e.g. one grown by resize).")
  var initAdapter: String?
  @Option(
    name: .customLong("prompt-tokens"),
    help:
      "Prompt tuning: train N embeddings prepended to every sequence (with LoRA, or alone with --targets none)."
  )
  var promptTokens: Int?
  @Option(
    name: .customLong("prefix-tokens"),
    help:
      "Prefix tuning: train N keys and values in front of every layer's (with LoRA, or alone with --targets none)."
  )
  var prefixTokens: Int?
  @Option(
    name: .customLong("prefix-projection"),
    help: "Reparameterise the prefix through a tanh MLP of this hidden size (PEFT's prefix_projection).")
  var prefixProjection: Int?
  @Option(help: "Peak learning rate (default 2e-4).") var lr: Double?
  @Option(help: "Learning-rate schedule: constant, linear, cosine (default cosine).") var schedule: String?
  @Option(help: "Warmup updates (default 0).") var warmup: Int?
  @Option(help: "Updates to take (default 100, or from --epochs).") var steps: Int?
  @Option(help: "Passes over the training data (sets --steps).") var epochs: Double?
  @Option(name: .customLong("batch-size"), help: "Sequences per update (default 8).") var batchSize: Int?
  @Option(name: .customLong("micro-batch"), help: "Sequences per forward/backward pass (default 4).")
  var microBatch: Int?
  @Option(
    help:
      "How each update's batch is divided over ranks and micro-batches: tokens (equal work per rank, attention counted; default) or sequences (equal counts, in order)."
  )
  var balance: String?
  @Flag(
    name: .customLong("padding-free"), inversion: .prefixedNo,
    help:
      "Lay each pass's sequences end to end, each attending only to itself: the same training without padded rows (the default, SFT and DPO alike, except with prompt or prefix tokens)."
  )
  var paddingFree: Bool?
  @Option(name: .customLong("weight-decay"), help: "AdamW weight decay (default 0.01).") var weightDecay:
    Double?
  @Option(
    name: .customLong("loraplus-lr-ratio"),
    help: "LoRA+: B's learning rate is this many times A's (PEFT's loraplus_lr_ratio; default 1, plain LoRA)."
  )
  var loraplusLRRatio: Double?
  @Option(
    help:
      "What to train: sft (next-token loss) or dpo (preference pairs {prompt, chosen, rejected}; default sft)."
  )
  var objective: String?
  @Option(help: "DPO's beta: how far the adapter may move from the base (default 0.1).") var beta: Double?
  @Option(
    name: .customLong("label-smoothing"),
    help: "DPO's label smoothing: the assumed rate of flipped preferences, in [0, 0.5) (default 0).")
  var labelSmoothing: Double?
  @Flag(
    name: .customLong("precompute-reference"), inversion: .prefixedNo,
    help:
      "DPO: score the reference once for every training pair before the first update and reuse it every epoch, instead of a reference pass in every update (default: when the run covers two epochs or more)."
  )
  var precomputeReference: Bool?
  @Option(name: .customLong("max-grad-norm"), help: "Clip the gradient norm to this (default 1; 0 disables).")
  var maxGradNorm: Double?
  @Option(help: "Seed of initialisation, shuffling and dropout (default 0).") var seed: UInt64?
  @Option(name: .customLong("eval-every"), help: "Validation loss every N updates (default: at the end).")
  var evalEvery: Int?
  @OptionGroup var threading: ThreadOptions
  @Flag(help: "Replace an adapter already in the output folder.") var overwrite = false
  @Flag(
    name: .customLong("checkpoint-activations"),
    help:
      "Keep only each layer's input; recompute the rest in the backward pass (less memory, ~1/3 more compute)."
  )
  var checkpointActivations = false
  @Option(
    name: .customLong("checkpoint-every"),
    help: "Write a resumable checkpoint every N updates, and after the last (default 50; 0: only at the end)."
  )
  var checkpointEvery: Int?
  @Option(
    help: "Checkpoints to keep, newest first (default 3; full checkpoints a kept delta needs stay too).")
  var keep: Int?
  @Option(
    name: .customLong("full-every"),
    help:
      "Every Nth checkpoint is full, the others are stored as changes against it (default 4; 1: all full).")
  var fullEvery: Int?
  @Option(
    help:
      "Continue from a checkpoint file, or the newest valid one in a folder (the output folder or its checkpoints/); 'auto': from the output folder's checkpoints if there are any, else start fresh (for requeued jobs)."
  )
  var resume: String?
  @Flag(help: "Resume even if the checkpoint was trained on a base model with another fingerprint.")
  var force = false
  @OptionGroup var ranks: LocalRankOptions
  @Option(
    name: .customLong("check-every"),
    help: "Every K updates, check that all ranks hold the same adapter (a hash compared across ranks).")
  var checkEvery: Int?
  @Flag(help: "Progress as JSON lines even on a terminal.") var json = false

  /// The flags as a configuration (unset flags are nil).
  func flagConfiguration() -> TrainConfiguration {
    var c = TrainConfiguration()
    c.model = model
    c.basePrecision = precision.basePrecision
    c.attentionPrecision = precision.attentionPrecision
    c.data = data
    c.validationData = validationData
    c.validationFraction = validationFraction
    c.output = output
    c.format = format
    c.maxSeqLen = maxSeqLen
    c.trainOnPrompt = trainOnPrompt ? true : nil
    c.chatFormat = chatFormat
    c.pack = pack ? true : nil
    c.skipBadLines = skipBadLines ? true : nil
    c.addEos = noEOS ? false : nil
    c.targets = targets.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
    switch rank {
    case .fixed(let r): c.rank = r
    case .auto: c.$rank = true
    case nil: break
    }
    if let rankLadder {
      c.rankLadder = rankLadder.split(separator: ",").map {
        Int($0.trimmingCharacters(in: .whitespaces)) ?? 0
      }
    }
    c.rankTolerance = rankTolerance
    c.alpha = alpha
    c.dropout = dropout
    c.rslora = rslora ? true : nil
    c.useDora = useDora ? true : nil
    c.layers = layers.map {
      $0.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
    }
    c.initWeights = initWeights
    c.initAdapter = initAdapter
    c.promptTokens = promptTokens
    c.prefixTokens = prefixTokens
    c.prefixProjection = prefixProjection
    c.lr = lr
    c.schedule = schedule
    c.warmup = warmup
    c.steps = steps
    c.epochs = epochs
    c.batchSize = batchSize
    c.microBatch = microBatch
    c.balance = balance
    c.paddingFree = paddingFree
    c.weightDecay = weightDecay
    c.loraplusLRRatio = loraplusLRRatio
    c.objective = objective
    c.beta = beta
    c.labelSmoothing = labelSmoothing
    c.precomputeReference = precomputeReference
    c.maxGradNorm = maxGradNorm
    c.seed = seed
    c.evalEvery = evalEvery
    c.threads = threading.threads
    c.overwrite = overwrite ? true : nil
    c.checkpointActivations = checkpointActivations ? true : nil
    c.checkpointEvery = checkpointEvery
    c.keep = keep
    c.fullEvery = fullEvery
    c.resume = resume
    c.force = force ? true : nil
    c.localRanks = ranks.localRanks
    c.pin = ranks.pin
    c.numaCopies = ranks.numaCopies ? true : nil
    c.checkEvery = checkEvery
    return c
  }

  /// What goes with `--jobs` besides it (and `--json`): the process's threads, ranks and
  /// their placement.
  static let jobFlagKeys: Set<String> = ["threads", "local_ranks", "pin", "numa_copies"]

  /// `--jobs` with flags the job file sets per adapter (or as its own keys) is refused by
  /// name: the job would otherwise run without them.
  func validate() throws {
    guard jobs != nil else { return }
    let ignored =
      try flagConfiguration().setKeys.filter { !Self.jobFlagKeys.contains($0) }
      .map { $0 == "add_eos" ? "--no-eos" : "--" + $0.replacingOccurrences(of: "_", with: "-") }
      + (config == nil ? [] : ["--config"])
    guard ignored.isEmpty else {
      throw ValidationError(
        "\(ignored.joined(separator: ", ")) cannot be used with --jobs: the job file sets the model, the "
          + "precisions and each adapter's settings (docs/job-file.md); with --jobs go only --threads, "
          + "--local-ranks, --pin/--no-pin, --numa-copies and --json")
    }
  }

  func run() throws {
    if let jobs {
      let job = try JobFile.load(path: jobs)
      let progress = Progress(forceJSON: json)
      let stop = StopRequest()
      let signals = TerminationSignal.install { stop.request() }
      defer { withExtendedLifetime(signals) {} }
      let runner = JobRun(job: job, progress: progress, stop: stop, numaCopies: ranks.numaCopies)
      let stopped: Bool
      if let ranks = self.ranks.localRanks, ranks > 1 {
        stopped = try Ranks.threads(ranks, threads: threading.threads, pin: self.ranks.pin ?? true) { comm in
          try runner.execute(world: comm)
        }[0]
      } else {
        stopped = try Ranks.run { world in
          Ranks.checkThreads(threading.threads ?? BLAS.threads, world: world)
          return try runner.execute(world: world)
        }
      }
      if stopped { throw ExitCode(143) }
      return
    }
    var settings = flagConfiguration()
    if let config { settings = try TrainConfiguration.load(yamlFile: config).overridden(by: settings) }
    let run = try TrainingRun(settings)
    let progress = Progress(forceJSON: json)
    // SIGTERM (what batch systems send before preempting): finish the update, checkpoint, exit 143.
    let stop = StopRequest()
    let signals = TerminationSignal.install { stop.request() }
    defer { withExtendedLifetime(signals) {} }
    let ending: FusedTrainer.Ending
    if let ranks = settings.localRanks, ranks > 1 {
      try Ranks.refuseUnderMPI()
      // One base for all thread-ranks, loaded here; per NUMA domain, loaded by the ranks.
      let perDomain = settings.numaCopies == true && CPUTopology.current().numaDomains.count > 1
      let shared = UncheckedSendable(
        (
          run,
          perDomain
            ? nil
            : try LoadedModel(
              path: run.model, precision: run.plan.basePrecision, attention: run.plan.attentionPrecision)
        ))
      ending = try Ranks.threads(ranks, threads: settings.threads, pin: settings.pin ?? true) { comm in
        try shared.value.0.execute(progress: progress, communicator: comm, loaded: shared.value.1, stop: stop)
      }[0]
    } else {
      ending = try Ranks.run { comm in
        Ranks.checkThreads(settings.threads ?? BLAS.threads, world: comm)
        return try run.execute(progress: progress, communicator: comm, stop: stop)
      }
    }
    if case .stopped = ending { throw ExitCode(143) }
  }
}
