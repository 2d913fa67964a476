import ArgumentParser
import Foundation
import LoRACheckpoint
import LoRAFormats
import LoRAKernels
import LoRAModel
import LoRARun
import LoRAServe
import LoRATraining

/// `swift-lora-dist route`: route signatures for `model: "auto"`, and how well they route.
struct Route: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Make route signatures for adapters, and measure how well prompts are routed to them.",
    discussion: """
      `serve` answers requests for model "auto" with the adapter whose route signature (the \
      base model's mean last hidden state over a sample of its training prompts) is most \
      similar to the request prompt's, or with the base below a threshold. `train` writes \
      the signature into its output folder; `route sign` makes one for an adapter trained \
      elsewhere; `route test` routes held-out prompts and prints the accuracy per task.

      Examples:
        swift-lora-dist route sign --model model.gguf --adapter peft-folder --data train.jsonl
        swift-lora-dist route test --model model.gguf --adapter devil=out/devil --adapter arith=out/arith \\
          --data devil=devil/valid.jsonl --data arith=arith/valid.jsonl
      """,
    subcommands: [Sign.self, Test.self])

  /// Options both subcommands read data with.
  struct DataOptions: ParsableArguments {
    @OptionGroup var base: BaseModelOptions
    @OptionGroup var precision: BasePrecisionOptions
    @Option(
      name: .customLong("format"), help: "Data format: auto, text, prompt_completion, messages, input_ids.")
    var dataFormat = "auto"
    @Option(help: "Prompts sampled per data file.") var limit = RouteSignature.samplePrompts
    @OptionGroup var threading: ThreadOptions

    func validate() throws {
      guard DataFormat(rawValue: dataFormat) != nil else {
        throw ValidationError("unknown --format '\(dataFormat)'")
      }
      guard limit >= 1 else { throw ValidationError("--limit must be at least 1") }
    }

    /// The prompts of `path` (at most `limit`, evenly spaced).
    func prompts(_ path: String, tokenizer: Tokenizer, chatTemplate: String?) throws -> [[Int32]] {
      let examples = try DatasetLoader.load(
        path: path, tokenizer: tokenizer,
        options: DatasetOptions(format: DataFormat(rawValue: dataFormat)!, maxSequenceLength: 4096)
          .resolvingChatFormat(template: chatTemplate, tokenizer: tokenizer)
      ).examples
      let stride = max(1, examples.count / limit)
      return RouteSignature.prompts(
        of: Swift.stride(from: 0, to: examples.count, by: stride).prefix(limit).map { examples[$0] })
    }
  }

  struct Sign: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Write an adapter's route signature from its training data.",
      discussion: """
        Writes route-signature.json into the adapter's folder (FILE.route-signature.json \
        beside an adapter file).

        Example:
          swift-lora-dist route sign --model model.gguf --adapter peft-folder --data train.jsonl
        """)
    @OptionGroup var options: DataOptions
    @Option(help: "The adapter: a training output folder, a checkpoint, a PEFT folder or a GGUF LoRA file.")
    var adapter: String
    @Option(help: "Its training data (JSON Lines).") var data: String

    func run() throws {
      options.threading.apply()
      guard AdapterFile.kind(of: adapter) != nil else {
        throw ValidationError(
          "\(adapter) is not an adapter (a training output folder, checkpoint, PEFT folder or GGUF LoRA)")
      }
      let files = try ModelFiles.open(options.base.model)
      let tokenizer = try Tokenizer.load(files)
      let (llama, _) = try LlamaModel.load(files, precision: options.precision.value.resolve())
      try options.precision.apply(to: llama)
      let prompts = try options.prompts(data, tokenizer: tokenizer, chatTemplate: files.chatTemplate)
      guard !prompts.isEmpty else { throw ValidationError("\(data): no examples to take prompts from") }
      let signature = RouteSignature.compute(
        prompts: prompts, model: llama, baseFingerprint: BaseFingerprint.of(llama, files: files),
        maxTokens: RouteSignature.promptTokens)
      let target = RouteSignature.location(for: adapter)
      try signature.save(to: target)
      print("route signature of \(adapter) from \(signature.prompts) prompts: \(target)")
    }
  }

  struct Test: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Route held-out prompts and print the routing accuracy per task.",
      discussion: """
        Each --data NAME=FILE gives prompts that should go to adapter NAME (or to the base, \
        for NAME = base). Prints one row per task and the confusion of wrong picks.

        Example:
          swift-lora-dist route test --model model.gguf --adapter a=out/a --adapter b=out/b \\
            --data a=a/valid.jsonl --data b=b/valid.jsonl --threshold 0.5
        """)
    @OptionGroup var options: DataOptions
    @Option(help: "NAME=PATH of an adapter with a route signature (repeatable).") var adapter: [String]
    @Option(help: "NAME=FILE: held-out prompts that belong to adapter NAME (repeatable).") var data: [String]
    @Option(help: "Below this cosine similarity a prompt goes to the base.") var threshold: Float =
      ServeSettings().routeThreshold
    @OptionGroup var output: JSONOutputOptions

    struct Row: Codable {
      var task: String
      var prompts: Int
      var correct: Int
      var picks: [String: Int]
    }

    func run() throws {
      options.threading.apply()
      let files = try ModelFiles.open(options.base.model)
      let tokenizer = try Tokenizer.load(files)
      let (llama, _) = try LlamaModel.load(files, precision: options.precision.value.resolve())
      try options.precision.apply(to: llama)
      let store = AdapterStore(model: llama, files: files, baseName: "base")
      for entry in adapter {
        let (name, path) = try NamedPath.parse(entry, option: "--adapter")
        let info = try store.load(name: name, path: path)
        guard info.routable else {
          throw ValidationError("\(path) has no route signature for this base: run 'route sign' first")
        }
      }
      let router = Router(threshold: threshold)
      var rows: [Row] = []
      for entry in data {
        let (task, path) = try NamedPath.parse(entry, option: "--data")
        var row = Row(task: task, prompts: 0, correct: 0, picks: [:])
        for prompt in try options.prompts(path, tokenizer: tokenizer, chatTemplate: files.chatTemplate)
        where !prompt.isEmpty {
          let pick = router.choose(prompt: prompt, model: llama, store: store).adapter ?? "base"
          row.prompts += 1
          row.picks[pick, default: 0] += 1
          if pick == task { row.correct += 1 }
        }
        rows.append(row)
      }
      let (total, correct) = (rows.map(\.prompts).reduce(0, +), rows.map(\.correct).reduce(0, +))
      if output.json {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        print(String(decoding: try encoder.encode(["tasks": rows]), as: UTF8.self))
        return
      }
      for row in rows {
        let wrong = row.picks.filter { $0.key != row.task }.sorted { $0.value > $1.value }
          .map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        print(
          "\(row.task): \(row.correct)/\(row.prompts) routed right (\(format(100 * Double(row.correct) / Double(max(row.prompts, 1)), 1))%)"
            + (wrong.isEmpty ? "" : "; elsewhere: \(wrong)"))
      }
      print(
        "overall: \(correct)/\(total) (\(format(100 * Double(correct) / Double(max(total, 1)), 1))%), threshold \(threshold)"
      )
    }
  }
}
