import ArgumentParser
import Foundation
import LoRACheckpoint
import LoRAFormats
import LoRAKernels
import LoRAModel
import LoRATraining

/// `swift-lora-dist eval`: loss, perplexity and exact match of a model, with or without an adapter.
struct Eval: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Score a base model, or base + adapter, on JSON Lines data: loss, perplexity, exact match.",
    discussion: """
      The loss is the mean over the tokens the data format trains (completions, assistant \
      turns, or all text). --exact-match also generates greedy completions of each prompt \
      and counts those equal to the reference (whitespace trimmed).

      Examples:
        swift-lora-dist eval --model model.gguf --data valid.jsonl
        swift-lora-dist eval --model model.gguf --adapter out/my-adapter --data valid.jsonl --exact-match
      """)

  @Option(help: "Base model: GGUF file or Hugging Face folder.") var model: String
  @Option(
    help:
      "An adapter to apply: a training output folder, a .sldckpt checkpoint, a PEFT folder or a GGUF LoRA file."
  )
  var adapter: String?
  @Flag(help: "Apply a checkpoint even if it was trained on a base with another fingerprint.")
  var force = false
  @Option(help: "Data (JSON Lines).") var data: String
  @Option(
    name: .customLong("format"), help: "Data format: auto, text, prompt_completion, messages, input_ids.")
  var dataFormat = "auto"
  @Option(name: .customLong("max-seq-len"), help: "Longest sequence in tokens.") var maxSeqLen = 512
  @Option(help: "Sequences per forward pass.") var batch = 4
  @Option(help: "Score only the first N examples.") var limit: Int?
  @Flag(name: .customLong("exact-match"), help: "Also measure exact-match accuracy of greedy completions.")
  var exactMatch = false
  @Option(name: .customLong("max-new-tokens"), help: "Most tokens generated per completion.")
  var maxNewTokens = 64
  @Option(help: "BLAS threads (default: OPENBLAS_NUM_THREADS or all cores).") var threads: Int?
  @Flag(help: "Print one JSON object.") var json = false

  func validate() throws {
    guard DataFormat(rawValue: dataFormat) != nil else {
      throw ValidationError("unknown --format '\(dataFormat)'")
    }
    guard batch >= 1, maxSeqLen >= 2, maxNewTokens >= 1 else {
      throw ValidationError("--batch ≥ 1, --max-seq-len ≥ 2 and --max-new-tokens ≥ 1 are needed")
    }
    if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
  }

  func run() throws {
    if let threads { BLAS.threads = threads }
    let files = try ModelFiles.open(model)
    let tokenizer = try Tokenizer.load(files)
    let (llama, _) = try LlamaModel.load(files)
    let lora = try adapter.map { try AdapterFile.load($0, model: llama, files: files, force: force).adapter }
    var examples = try DatasetLoader.load(
      path: data, tokenizer: tokenizer,
      options: DatasetOptions(format: DataFormat(rawValue: dataFormat)!, maxSequenceLength: maxSeqLen)
    ).examples
    if let limit { examples = Array(examples.prefix(limit)) }
    let evaluator = Evaluator(
      model: llama, adapter: lora, microBatch: batch, padID: Int32(tokenizer.padID ?? tokenizer.eosID ?? 0))
    let (loss, tokens) = evaluator.meanLoss(of: examples)
    let completions =
      exactMatch ? try evaluator.exactMatch(examples, tokenizer: tokenizer, maxNewTokens: maxNewTokens) : []
    let correct = completions.filter(\.correct).count
    let result = EvalResult(
      model: model, adapter: adapter, data: data, examples: examples.count, tokens: tokens, loss: loss,
      perplexity: exp(loss),
      exactMatch: completions.isEmpty ? nil : Double(correct) / Double(completions.count),
      completions: completions.isEmpty ? nil : completions)
    if json {
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.sortedKeys]
      print(String(decoding: try encoder.encode(result), as: UTF8.self))
      return
    }
    print("\(adapter.map { "adapter \($0) on " } ?? "")\(model)")
    print("data \(data): \(examples.count) examples, \(tokens) scored tokens")
    print("loss \(format(loss, 4)), perplexity \(format(exp(loss), 3))")
    if !completions.isEmpty {
      print(
        "exact match \(correct)/\(completions.count) = \(format(100 * Double(correct) / Double(completions.count), 1))%"
      )
      for c in completions.prefix(5) {
        print(
          "  \(c.correct ? "✓" : "✗") \(c.prompt.debugDescription) → \(c.generated.debugDescription) (expected \(c.expected.debugDescription))"
        )
      }
    }
  }
}

struct EvalResult: Codable {
  var model: String
  var adapter: String?
  var data: String
  var examples: Int
  var tokens: Int
  var loss: Double
  var perplexity: Double
  var exactMatch: Double?
  var completions: [Evaluator.Completion]?
}
