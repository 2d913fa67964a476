import ArgumentParser
import Dispatch
import Foundation
import LoRACheckpoint
import LoRAFormats
import LoRAKernels
import LoRAModel
import LoRARun
import LoRAServeHTTP

/// `swift-lora-dist generate`: text from a base model, with a KV cache.
struct Generate: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Generate text from a base model (GGUF file or Hugging Face folder).",
    discussion: """
      The prompt runs through the model in one batched pass; then tokens are generated one \
      at a time with a KV cache and printed as they come. Timings go to standard error.

      Examples:
        swift-lora-dist generate --model model.gguf --prompt "The capital of France is"
        swift-lora-dist generate --model model.gguf --chat "Name three rivers." --max-tokens 64
        swift-lora-dist generate --model model.gguf --adapter out/arithmetic --prompt "What is 12 plus 30?"
        swift-lora-dist generate --model ./SmolLM2-folder --prompt "Once" --temperature 0.8 --top-p 0.9 --seed 7
        swift-lora-dist generate --model model.gguf --adapter out/a --adapter out/b --prompt "Define: LAWYER"

      Several --adapter options answer the prompt with each adapter from one loaded base, \
      all in one batch (each row with its own adapter and KV cache, the same decode step \
      `serve` batches requests with); each answer equals that adapter's alone.
      """)

  @OptionGroup var base: BaseModelOptions
  @OptionGroup var precision: BasePrecisionOptions

  @OptionGroup var adapters: AdapterOptions

  @Option(help: "Text to continue, as is.")
  var prompt: String?

  @Option(help: "A user message, rendered with the model's chat template (ChatML).")
  var chat: String?

  @Option(help: "A system message for --chat.")
  var system: String?

  @Option(name: .customLong("max-tokens"), help: "Most tokens to generate.")
  var maxTokens = 128

  @Option(help: "Sampling temperature; 0 is greedy.")
  var temperature: Float = 0

  @Option(name: .customLong("top-p"), help: "Nucleus sampling: keep the most likely tokens up to this mass.")
  var topP: Float = 1

  @Option(help: "Seed of the sampler.")
  var seed: UInt64 = 0

  @OptionGroup var threading: ThreadOptions

  @Flag(help: "Print one JSON object with the text, token ids and timings instead of streaming.")
  var json = false

  func validate() throws {
    guard (prompt == nil) != (chat == nil) else {
      throw ValidationError("give exactly one of --prompt and --chat")
    }
    guard maxTokens >= 1 else { throw ValidationError("--max-tokens must be at least 1") }
    guard temperature >= 0 else { throw ValidationError("--temperature must be 0 or more") }
    guard topP > 0 && topP <= 1 else { throw ValidationError("--top-p must be in (0, 1]") }
    if system != nil && chat == nil { throw ValidationError("--system needs --chat") }
  }

  func run() throws {
    threading.apply()
    let files = try ModelFiles.open(base.model)
    let tokenizer = try Tokenizer.load(files)
    let (llama, origin) = try LlamaModel.load(files, precision: precision.value.resolve())
    try precision.apply(to: llama)

    var stop: Set<Int32> = []
    if let eos = tokenizer.eosID { stop.insert(Int32(eos)) }
    let text: String
    var withBOS: Bool?
    if let chat {
      guard let format = ChatFormat.detect(template: files.chatTemplate, tokenizer: tokenizer) else {
        throw ValidationError(
          "\(base.model): the model's chat template is not one this tool renders (\(ChatFormat.names)); "
            + "use --prompt instead of --chat")
      }
      var messages: [ChatMessage] = []
      if let system { messages.append(ChatMessage(role: "system", content: system)) }
      messages.append(ChatMessage(role: "user", content: chat))
      do throws(ChatFormatError) {
        text = try format.render(messages, addGenerationPrompt: true, for: tokenizer).text
      } catch {
        throw ValidationError("--system: \(error.description)")
      }
      withBOS = false
      for marker in format.endOfTurn {
        if let end = tokenizer.id(of: marker) { stop.insert(end) }
      }
    } else {
      text = prompt ?? ""
    }
    let ids = tokenizer.encode(text, withBOS: withBOS)
    let loras = try adapters.adapter.map {
      try AdapterFile.load($0, model: llama, files: files, force: adapters.force).adapter
    }
    if loras.count > 1 {
      try generateSeveral(llama, loras, prompt: ids, stop: stop, tokenizer: tokenizer)
      return
    }
    let lora = loras.first
    let generator = Generator(
      model: llama,
      capacity: min(llama.config.contextLength, ids.count + min(maxTokens, llama.config.contextLength)),
      adapter: lora)
    var sampler = Sampler(temperature: temperature, topP: topP, seed: seed)
    var output: [Int32] = []
    var pending: [UInt8] = []
    let stats = try generator.generate(prompt: ids, maxTokens: maxTokens, sampler: &sampler, stop: stop) {
      token in
      output.append(token)
      if !json && !stop.contains(token) {
        pending += tokenizer.bytes(of: token)
        let ready = Utf8Prefix.complete(pending)
        if ready > 0 {
          FileHandle.standardOutput.write(Data(pending[..<ready]))
          pending.removeFirst(ready)
        }
      }
      return true
    }
    let threadsUsed = BLAS.threads
    if json {
      let result = GenerateResult(
        text: tokenizer.decode(output.filter { !stop.contains($0) }), promptIDs: ids, ids: output,
        loadSeconds: origin.loadSeconds, blasThreads: threadsUsed, stats: stats)
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.sortedKeys]
      print(String(decoding: try encoder.encode(result), as: UTF8.self))
    } else {
      if !pending.isEmpty { FileHandle.standardOutput.write(Data(pending)) }
      print("")
      let summary =
        "load \(format(origin.loadSeconds, 2)) s; prompt \(stats.promptTokens) tokens at "
        + "\(format(stats.promptTokensPerSecond, 1)) tokens/s; generated \(stats.generatedTokens) tokens at "
        + "\(format(stats.generationTokensPerSecond, 1)) tokens/s (\(threadsUsed) BLAS thread(s), \(BLAS.coreName))"
      FileHandle.standardError.write(Data((summary + "\n").utf8))
    }
  }
}

extension Generate {
  /// One answer per adapter, decoded together in one batch; printed once all are done.
  func generateSeveral(
    _ llama: LlamaModel, _ loras: [LoRAAdapter], prompt: [Int32], stop: Set<Int32>, tokenizer: Tokenizer
  ) throws {
    guard !prompt.isEmpty else { throw GenerationError.emptyPrompt }
    let virtual = loras.map(\.virtualPositions).max() ?? 0
    let capacity = min(llama.config.contextLength, llama.rope.maxPositions) - virtual
    guard maxTokens <= capacity - prompt.count else {  // a difference: --max-tokens may be near Int.max
      throw GenerationError.tooLong(prompt: prompt.count, maxTokens: maxTokens, capacity: capacity)
    }
    let decoder = BatchDecoder(
      model: llama, maxRows: loras.count, maxRank: loras.flatMap { $0.modules.map(\.rank) }.max() ?? 1)
    let sequences = loras.map {
      DecodeSequence(
        config: llama.config, adapter: $0, capacity: $0.virtualPositions + prompt.count + maxTokens)
    }
    var samplers = loras.map { _ in Sampler(temperature: temperature, topP: topP, seed: seed) }
    let started = DispatchTime.now().uptimeNanoseconds
    var outputs: [[Int32]] = sequences.indices.map { i in
      [samplers[i].next(decoder.prefill(sequences[i], prompt: prompt))]
    }
    let promptDone = DispatchTime.now().uptimeNanoseconds
    var active = sequences.indices.filter { !stop.contains(outputs[$0][0]) && maxTokens > 1 }
    var steps = 0
    while !active.isEmpty {
      let logits = decoder.step(active.map { sequences[$0] }, tokens: active.map { outputs[$0].last! })
      let v = llama.config.vocabularySize
      for (row, i) in active.enumerated() {
        outputs[i].append(samplers[i].next(logits.view(offset: row * v, shape: [v])))
      }
      steps += 1
      active = active.filter { !stop.contains(outputs[$0].last!) && outputs[$0].count < maxTokens }
    }
    let seconds = Double(DispatchTime.now().uptimeNanoseconds - promptDone) / 1e9
    for (path, output) in zip(adapters.adapter, outputs) {
      let text = tokenizer.decode(output.filter { !stop.contains($0) })
      if json {
        let stats = GenerationStats(
          promptTokens: prompt.count, generatedTokens: output.count,
          promptSeconds: Double(promptDone - started) / 1e9, generationSeconds: seconds)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let result = GenerateResult(
          text: text, promptIDs: prompt, ids: output, loadSeconds: 0, blasThreads: BLAS.threads, stats: stats,
          adapter: path)
        print(String(decoding: try encoder.encode(result), as: UTF8.self))
      } else {
        print("== \(path)")
        print(text)
      }
    }
    let tokens = outputs.map(\.count).reduce(0, +)
    FileHandle.standardError.write(
      Data(
        ("\(loras.count) adapters in one batch: \(tokens) tokens in \(steps) steps, "
          + "\(format(Double(max(tokens - loras.count, 0)) / max(seconds, 1e-9), 1)) tokens/s\n").utf8))
  }
}

/// What `generate --json` prints.
struct GenerateResult: Codable {
  var text: String
  var promptIDs: [Int32]
  var ids: [Int32]
  var loadSeconds: Double
  var blasThreads: Int
  var stats: GenerationStats
  /// With several --adapter options: which one answered.
  var adapter: String?
}
