import ArgumentParser
import LoRACheckpoint
import LoRAKernels
import LoRAModel

/// `--model`: the base model of a command that needs one.
struct BaseModelOptions: ParsableArguments {
  @Option(help: "Base model: GGUF file or Hugging Face folder (with its tokenizer).") var model: String
}

/// `--base-precision`: how the frozen base's matrices are held and multiplied, on the
/// commands that run the model (merge, import and inspect always read fp32).
struct BasePrecisionOptions: ParsableArguments {
  @Option(
    name: .customLong("base-precision"),
    help: ArgumentHelp(
      "Hold the frozen base in bf16 or f32 (auto: bf16 where the CPU has native bf16 products).",
      valueName: "auto|bf16|f32"))
  var basePrecision: BasePrecision?

  @Option(
    name: .customLong("attention-precision"),
    help: ArgumentHelp(
      "Attention's products in bf16 or f32 (auto: bf16 with a bf16 base on oneDNN, else f32).",
      valueName: "auto|bf16|f32"))
  var attentionPrecision: AttentionPrecision?

  /// The choice, auto when not given.
  var value: BasePrecision { basePrecision ?? .auto }

  /// Sets `model`'s attention precision as asked (auto: follow the base).
  func apply(to model: LlamaModel) throws {
    model.attentionPrecision = try (attentionPrecision ?? .auto).resolve()
  }
}

extension BasePrecision: ExpressibleByArgument {}
extension AttentionPrecision: ExpressibleByArgument {}

/// `--threads`: the BLAS and kernel threads of this process.
struct ThreadOptions: ParsableArguments {
  @Option(help: "BLAS threads (default: OPENBLAS_NUM_THREADS or all cores).") var threads: Int?

  func validate() throws {
    if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
  }

  /// Sets the threads, when given.
  func apply() {
    if let threads { BLAS.threads = threads }
  }
}

/// `--json`: one JSON object instead of text.
struct JSONOutputOptions: ParsableArguments {
  @Flag(help: "Print one JSON object.") var json = false
}

/// `--local-ranks`: data-parallel ranks as threads of this process, sharing one base.
struct LocalRankOptions: ParsableArguments {
  @Option(
    name: .customLong("local-ranks"),
    help:
      "Run N data-parallel ranks as threads of this process (without mpirun), each with --threads kernel threads; the base is held once."
  )
  var localRanks: Int?
  @Flag(
    inversion: .prefixedNo,
    help:
      "Bind each of --local-ranks' rank threads to a CPU of its own when they fit (one kernel thread each; the default); --no-pin leaves them to the scheduler."
  )
  var pin: Bool?
  @Flag(
    name: .customLong("numa-copies"),
    help:
      "One copy of the frozen base per NUMA domain, shared by the ranks bound within it (noted and unchanged on a machine of one domain)."
  )
  var numaCopies = false

  func validate() throws {
    if let localRanks, localRanks < 1 { throw ValidationError("--local-ranks must be at least 1") }
  }
}

/// `--adapter` (repeatable) and `--force`: adapters to apply to the base.
struct AdapterOptions: ParsableArguments {
  @Option(
    help:
      "An adapter: a training output folder, a .sldckpt checkpoint, a PEFT folder or a GGUF LoRA file; repeat for several."
  )
  var adapter: [String] = []
  @Flag(help: "Use a checkpoint even if it was trained on a base with another fingerprint.")
  var force = false
}

/// Where `resize` and `combine` write the adapter they make: a PEFT folder or a GGUF LoRA.
struct AdapterWriteOptions: ParsableArguments {
  enum Format: String, ExpressibleByArgument, CaseIterable { case peft, gguf }

  @Option(help: "Output folder (peft) or file (gguf).") var output: String
  @Option(help: "peft (default) or gguf.") var format: Format = .peft
  @Flag(help: "Replace an existing output.") var overwrite = false

  /// Writes `adapter` (for a base of `config` named `baseName`) whole or not at all.
  func write(_ adapter: LoRAAdapter, config: LlamaConfig, baseName: String) throws {
    switch format {
    case .peft: try adapter.savePEFT(to: output, baseModel: baseName, overwrite: overwrite)
    case .gguf: try adapter.saveGGUFLoRA(to: output, base: config, baseName: baseName, overwrite: overwrite)
    }
  }
}

/// `--rank`: a number, or `auto` (climb a ladder of ranks while validation improves).
enum RankArgument: ExpressibleByArgument, Equatable {
  case fixed(Int)
  case auto

  init?(argument: String) {
    if argument == "auto" {
      self = .auto
    } else if let value = Int(argument) {
      self = .fixed(value)
    } else {
      return nil
    }
  }
}
