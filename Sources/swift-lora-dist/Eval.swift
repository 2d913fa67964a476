import ArgumentParser
import Dispatch
import Foundation
import LoRACheckpoint
import LoRAFormats
import LoRAKernels
import LoRAModel
import LoRARun
import LoRAServe
import LoRATraining

/// `swift-lora-dist eval`: loss, perplexity and exact match of a model, with or without an adapter.
struct Eval: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Score a base model, or base + adapter, on JSON Lines data: loss, perplexity, exact match.",
    discussion: """
      The loss is the mean over the tokens the data format trains (completions, assistant \
      turns, or all text). --exact-match also generates greedy completions of each prompt \
      and counts those equal to the reference (whitespace trimmed).

      Several --adapter options score each adapter on the data from one loaded base, and \
      print a table with one row per adapter. With --merged each adapter is merged into \
      the base's weights in turn (the task switch of the LoRA paper: restore the adapted \
      matrices, add s·B·A; the switch time is reported) instead of applied as low-rank terms.

      --objective dpo scores preference pairs ({"prompt", "chosen", "rejected"}) instead: \
      DPO's loss at --beta and its reward metrics (accuracy, margin) against the reference \
      each adapter started from (the base, or a tree node's ancestors), as training's \
      validation reports them.

      Examples:
        swift-lora-dist eval --model model.gguf --data valid.jsonl
        swift-lora-dist eval --model model.gguf --adapter out/my-adapter --data valid.jsonl --exact-match
        swift-lora-dist eval --model model.gguf --adapter out/a --adapter out/b --data valid.jsonl --merged
        swift-lora-dist eval --model model.gguf --adapter out/dpo --data pairs-valid.jsonl --objective dpo --beta 0.1
      """)

  @OptionGroup var base: BaseModelOptions
  @OptionGroup var precision: BasePrecisionOptions
  @OptionGroup var adapters: AdapterOptions
  @Flag(help: "Merge each adapter into the base's weights in turn instead of applying it as low-rank terms.")
  var merged = false
  @Option(help: "Data (JSON Lines).") var data: String
  @Option(
    name: .customLong("format"), help: "Data format: auto, text, prompt_completion, messages, input_ids.")
  var dataFormat = "auto"
  @Option(name: .customLong("max-seq-len"), help: "Longest sequence in tokens.") var maxSeqLen = 512
  @Option(
    help:
      "Sequences per forward pass (default: an adapter's training micro-batch from its training_config.json, which gives the run's validation loss bit for bit; else 4)."
  )
  var batch: Int?
  @Option(help: "Score only the first N examples.") var limit: Int?
  @Flag(name: .customLong("exact-match"), help: "Also measure exact-match accuracy of greedy completions.")
  var exactMatch = false
  @Option(name: .customLong("max-new-tokens"), help: "Most tokens generated per completion.")
  var maxNewTokens = 64
  @Option(
    help: "What to score: sft (token loss; default) or dpo (preference pairs: DPO loss and reward metrics).")
  var objective = "sft"
  @Option(help: "DPO's β, as in training (with --objective dpo; default 0.1).") var beta: Double = 0.1
  @OptionGroup var threading: ThreadOptions
  @OptionGroup var output: JSONOutputOptions

  func validate() throws {
    guard DataFormat(rawValue: dataFormat) != nil else {
      throw ValidationError("unknown --format '\(dataFormat)'")
    }
    guard batch ?? 1 >= 1, maxSeqLen >= 2, maxNewTokens >= 1 else {
      throw ValidationError("--batch ≥ 1, --max-seq-len ≥ 2 and --max-new-tokens ≥ 1 are needed")
    }
    if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
    guard objective == "sft" || objective == "dpo" else {
      throw ValidationError("--objective is sft or dpo, got '\(objective)'")
    }
    if objective == "dpo" {
      guard beta > 0 && beta.isFinite else { throw ValidationError("--beta must be positive, got \(beta)") }
      guard !merged && !exactMatch else {
        throw ValidationError(
          "--objective dpo scores log-probabilities against each adapter's reference; --merged and --exact-match apply to sft"
        )
      }
    }
  }

  func run() throws {
    threading.apply()
    let files = try ModelFiles.open(base.model)
    let tokenizer = try Tokenizer.load(files)
    let (llama, _) = try LlamaModel.load(files, precision: precision.value.resolve())
    try precision.apply(to: llama)
    if objective == "dpo" { return try scorePreferences(files: files, model: llama, tokenizer: tokenizer) }
    let loras = try adapters.adapter.map {
      try AdapterFile.load($0, model: llama, files: files, force: adapters.force).adapter
    }
    var examples = try DatasetLoader.load(
      path: data, tokenizer: tokenizer,
      options: DatasetOptions(format: DataFormat(rawValue: dataFormat)!, maxSequenceLength: maxSeqLen)
        .resolvingChatFormat(template: files.chatTemplate, tokenizer: tokenizer)
    ).examples
    if let limit { examples = Array(examples.prefix(limit)) }
    let switcher =
      merged ? TaskSwitcher(base: llama, targets: Set(loras.flatMap { $0.modules.map(\.target) })) : nil
    var results: [EvalResult] = []
    for (path, lora) in zip(
      adapters.adapter.isEmpty ? [nil] : adapters.adapter.map { Optional($0) },
      loras.isEmpty ? [nil] : loras.map { Optional($0) })
    {
      var switchSeconds: Double?
      var scored = (model: llama, adapter: lora)
      if let switcher {
        let start = DispatchTime.now().uptimeNanoseconds
        try switcher.activate(lora)
        switchSeconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        scored = (switcher.model, nil)
      }
      var result = try score(
        examples, model: scored.model, adapter: scored.adapter, tokenizer: tokenizer, batch: passBatch(path))
      result.adapter = path
      result.switchSeconds = switchSeconds
      results.append(result)
    }
    if output.json {
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.sortedKeys]
      for result in results { print(String(decoding: try encoder.encode(result), as: UTF8.self)) }
      return
    }
    for result in results { show(result) }
    if results.count > 1 { table(results) }
  }

  /// Sequences per pass for the adapter at `path`: `--batch`, else the micro-batch its run
  /// recorded in `training_config.json` (the grouping of the run's validation, so the same
  /// bits: another grouping changes products at float's last bit), else 4.
  func passBatch(_ path: String?) -> Int {
    if let batch { return batch }
    guard let path,
      let data = FileManager.default.contents(
        atPath: URL(fileURLWithPath: path).appendingPathComponent("training_config.json").path),
      let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
      let text = object["training.microBatch"] as? String, let recorded = Int(text), recorded >= 1
    else { return 4 }
    return recorded
  }

  /// Loss, perplexity and exact match of one model (with or without low-rank terms).
  func score(
    _ examples: [Example], model llama: LlamaModel, adapter lora: LoRAAdapter?, tokenizer: Tokenizer,
    batch: Int
  ) throws -> EvalResult {
    let evaluator = Evaluator(
      model: llama, adapter: lora, microBatch: batch, padID: Int32(tokenizer.padID ?? tokenizer.eosID ?? 0))
    let (loss, tokens) = evaluator.meanLoss(of: examples)
    let completions =
      exactMatch ? try evaluator.exactMatch(examples, tokenizer: tokenizer, maxNewTokens: maxNewTokens) : []
    let correct = completions.filter(\.correct).count
    return EvalResult(
      model: base.model, adapter: nil, data: data, examples: examples.count, tokens: tokens, loss: loss,
      perplexity: exp(loss),
      exactMatch: completions.isEmpty ? nil : Double(correct) / Double(completions.count),
      completions: completions.isEmpty ? nil : completions)
  }

  func show(_ result: EvalResult) {
    print("\(result.adapter.map { "adapter \($0) on " } ?? "")\(base.model)")
    print("data \(data): \(result.examples) examples, \(result.tokens) scored tokens")
    print("loss \(format(result.loss, 4)), perplexity \(format(result.perplexity, 3))")
    if let completions = result.completions {
      let correct = completions.filter(\.correct).count
      print(
        "exact match \(correct)/\(completions.count) = \(format(100 * Double(correct) / Double(completions.count), 1))%"
      )
      for c in completions.prefix(5) {
        print(
          "  \(c.correct ? "✓" : "✗") \(c.prompt.debugDescription) → \(c.generated.debugDescription) (expected \(c.expected.debugDescription))"
        )
      }
    }
    if let switchSeconds = result.switchSeconds { print("merged in \(format(switchSeconds * 1e3, 2)) ms") }
  }

  /// One row per adapter.
  func table(_ results: [EvalResult]) {
    let width = max(7, results.map { ($0.adapter ?? "base").count }.max() ?? 0)
    func pad(_ s: String) -> String { s.padding(toLength: width, withPad: " ", startingAt: 0) }
    print("")
    print("\(pad("adapter"))  loss     perplexity  exact match\(merged ? "  switch ms" : "")")
    for r in results {
      let em = r.exactMatch.map { format(100 * $0, 1) + "%" } ?? "-"
      let sw = r.switchSeconds.map { "  " + format($0 * 1e3, 2) } ?? ""
      print(
        "\(pad(r.adapter ?? "base"))  \(format(r.loss, 4).padding(toLength: 7, withPad: " ", startingAt: 0))  "
          + "\(format(r.perplexity, 3).padding(toLength: 10, withPad: " ", startingAt: 0))  \(em.padding(toLength: 11, withPad: " ", startingAt: 0))\(sw)"
      )
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
  /// With --merged: how long merging this adapter took.
  var switchSeconds: Double?
}
