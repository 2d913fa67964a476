import ArgumentParser
import Dispatch
import Foundation
import LoRACheckpoint
import LoRAFormats
import LoRAKernels
import LoRAModel
import LoRAServe
import LoRAServeHTTP

/// `swift-lora-dist serve`: an OpenAI-compatible HTTP server for the base and its adapters.
struct Serve: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Serve the base model and many adapters over an OpenAI-compatible HTTP API.",
    discussion: """
      One process holds the frozen base and every adapter; requests for different adapters \
      are decoded together in one batch (continuous batching). A request's "model" is an \
      adapter's name, the base's name (--served-model-name) or "auto" (the router picks the \
      adapter whose training prompts look most like the request, or the base).

      Endpoints:
        POST   /v1/completions       prompt, max_tokens (16), temperature (1, 0 greedy),
                                     top_p, stop (up to 4 strings), seed, stream
        POST   /v1/chat/completions  messages (ChatML); max_tokens: rest of context
        GET    /v1/models            the base (parent null) and every adapter
        POST   /v1/adapters          {"name", "path", "pin"?}: loads one (201)
        DELETE /v1/adapters/NAME     unloads one
        GET    /health               {"status": "ok"}
        GET    /metrics              Prometheus text format

      Prints "listening on http://HOST:PORT" once it accepts connections (with --port 0, the \
      port chosen). SIGTERM or SIGINT: stops accepting, finishes the requests in flight, exits 0.

      Examples:
        swift-lora-dist serve --model model.gguf --adapter sql=out/sql --adapter qa=out/qa
        swift-lora-dist serve --model model.gguf --adapters-dir out --adapter-cache-mb 512 \\
          --pin sql
        swift-lora-dist serve --model ./SmolLM2-folder --host 0.0.0.0 --port 8000 --max-batch 8
        curl http://127.0.0.1:8000/v1/completions -H 'Content-Type: application/json' \\
          -d '{"model": "sql", "prompt": "SELECT", "max_tokens": 16, "temperature": 0}'
      """)

  @OptionGroup var base: BaseModelOptions
  @OptionGroup var precision: BasePrecisionOptions

  @Option(
    name: .customLong("adapter"),
    help: ArgumentHelp(
      "An adapter as NAME=PATH: a training output folder, a .sldckpt checkpoint, a PEFT folder or a GGUF LoRA file (repeatable).",
      valueName: "name=path"))
  var adapters: [String] = []

  @Option(
    name: .customLong("adapters-dir"),
    help: ArgumentHelp(
      "Load every adapter in this folder, each named by its file or folder name (without .sldckpt or .gguf).",
      valueName: "dir"))
  var adaptersDir: String?

  @Option(
    name: .customLong("adapter-cache-mb"),
    help:
      "Most MiB of adapters kept in RAM; the least recently used unpinned ones are dropped and read again when needed (default: no limit)."
  )
  var adapterCacheMB: Int?

  @Option(
    name: .customLong("pin"),
    help: ArgumentHelp("Keep this adapter in RAM always (repeatable).", valueName: "name"))
  var pins: [String] = []

  @Option(help: "Address to listen on.")
  var host = "127.0.0.1"

  @Option(help: "Port to listen on; 0 picks a free one.")
  var port = 8000

  @Option(name: .customLong("max-batch"), help: "Most sequences decoded together in one step.")
  var maxBatch = ServeSettings().maxBatch

  @Option(
    name: .customLong("max-queue"), help: "Most requests waiting for a place in the batch; more get 429.")
  var maxQueue = ServeSettings().maxQueue

  @Option(
    name: .customLong("route-threshold"),
    help: "Model \"auto\": below this cosine similarity to every adapter's route signature, the base answers."
  )
  var routeThreshold = ServeSettings().routeThreshold

  @Option(
    help: ArgumentHelp(
      "mixed: every adapter's sequences advance together in one batch; one-adapter: only one model's requests share the batch at a time (as llama.cpp's server does), for comparison.",
      valueName: "mixed|one-adapter"))
  var schedule = ServeSettings().schedule.rawValue

  @Option(
    name: .customLong("served-model-name"),
    help:
      "The base's name in requests and /v1/models (default: the model file or folder name without extension)."
  )
  var servedModelName: String?

  @OptionGroup var threading: ThreadOptions

  func validate() throws {
    guard (0...65535).contains(port) else { throw ValidationError("--port must be between 0 and 65535") }
    guard maxBatch >= 1 else { throw ValidationError("--max-batch must be at least 1") }
    guard maxQueue >= 1 else { throw ValidationError("--max-queue must be at least 1") }
    guard ServeSettings.Schedule(rawValue: schedule) != nil else {
      throw ValidationError("--schedule must be mixed or one-adapter, got '\(schedule)'")
    }
    guard (-1...1).contains(routeThreshold) else {
      throw ValidationError("--route-threshold must be between -1 and 1")
    }
    if let adapterCacheMB, adapterCacheMB < 1 {
      throw ValidationError("--adapter-cache-mb must be at least 1")
    }
    for spec in adapters {
      guard let (name, path) = Self.split(spec), !name.isEmpty, !path.isEmpty else {
        throw ValidationError("--adapter '\(spec)': expected NAME=PATH, e.g. --adapter sql=out/sql")
      }
      guard AdapterStore.isValidName(name) else {
        throw ValidationError(
          "--adapter '\(spec)': the name may use 1 to 128 letters, digits, '.', '_', '-', '/' or ':'")
      }
    }
    if let name = servedModelName, name.isEmpty || name == "auto" {
      throw ValidationError("--served-model-name must not be empty or 'auto'")
    }
  }

  static func split(_ spec: String) -> (String, String)? {
    guard let eq = spec.firstIndex(of: "=") else { return nil }
    return (String(spec[..<eq]), String(spec[spec.index(after: eq)...]))
  }

  /// Name → path of every adapter in `folder`, by name.
  static func adapters(in folder: String) throws -> [(String, String)] {
    let entries = try FileManager.default.contentsOfDirectory(atPath: folder).sorted()
    return entries.compactMap { entry in
      let path = (folder as NSString).appendingPathComponent(entry)
      guard !entry.hasPrefix("."), AdapterFile.kind(of: path) != nil else { return nil }
      var name = entry
      for suffix in [".sldckpt", ".gguf"] where name.hasSuffix(suffix) {
        name = String(name.dropLast(suffix.count))
      }
      return (name, path)
    }
  }

  /// The default base name: the model's file or folder name without its extension.
  static func baseName(of model: String) -> String {
    let last = URL(fileURLWithPath: model).standardizedFileURL.lastPathComponent
    return last.hasSuffix(".gguf") ? String(last.dropLast(5)) : last
  }

  func run() throws {
    threading.apply()
    let files = try ModelFiles.open(base.model)
    let tokenizer = try Tokenizer.load(files)
    let (llama, _) = try LlamaModel.load(files, precision: precision.value.resolve())
    try precision.apply(to: llama)
    let store = AdapterStore(
      model: llama, files: files, baseName: servedModelName ?? Self.baseName(of: base.model),
      budgetBytes: adapterCacheMB.map { $0 << 20 })

    var specs = adapters.compactMap(Self.split)
    if let adaptersDir { specs += try Self.adapters(in: adaptersDir) }
    let unknownPins = Set(pins).subtracting(specs.map(\.0))
    guard unknownPins.isEmpty else {
      throw ValidationError(
        "--pin \(unknownPins.sorted().joined(separator: ", ")): no adapter of that name is given")
    }
    for (name, path) in specs {
      let info = try store.load(name: name, path: path, pin: pins.contains(name))
      Self.log(
        "adapter \(info.name): \(info.kind), rank \(info.rank), \(info.targets.joined(separator: ",")), "
          + "\(info.bytes >> 10) KiB\(info.pinned ? ", pinned" : "")\(info.routable ? ", routable" : "")")
    }
    var settings = ServeSettings()
    settings.maxBatch = maxBatch
    settings.maxQueue = maxQueue
    settings.routeThreshold = routeThreshold
    settings.schedule = ServeSettings.Schedule(rawValue: schedule) ?? .mixed
    let engine = try ServingEngine(store: store, settings: settings)
    let server = OpenAIServer(engine: engine, tokenizer: tokenizer, chatTemplate: files.chatTemplate)
    Self.log(
      "base \(store.baseName) (\(store.baseFingerprint)), context \(engine.contextLength) tokens, "
        + "\(specs.count) adapter(s), \(BLAS.threads) BLAS thread(s)")

    let app = server.application(host: host, port: port) { host, port in
      FileHandle.standardOutput.write(Data("listening on http://\(host):\(port)\n".utf8))
    }
    // The command is synchronous: the server runs on the concurrency pool while this thread waits.
    let outcome = Outcome()
    let done = DispatchSemaphore(value: 0)
    Task {
      do { try await app.runService() } catch { outcome.error = "\(error)" }
      done.signal()
    }
    done.wait()
    if let error = outcome.error { throw ValidationError("the server stopped: \(error)") }
    Self.log("stopped: every request finished")
  }

  static func log(_ line: String) { FileHandle.standardError.write(Data((line + "\n").utf8)) }

  /// The server task's error, read once it has finished.
  final class Outcome: @unchecked Sendable { var error: String? }
}
