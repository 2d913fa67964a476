import ArgumentParser
import LoRAKernels

/// `--model`: the base model of a command that needs one.
struct BaseModelOptions: ParsableArguments {
  @Option(help: "Base model: GGUF file or Hugging Face folder (with its tokenizer).") var model: String
}

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
