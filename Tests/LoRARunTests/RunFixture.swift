import Foundation
import LoRAComm
import LoRACoordinator
import LoRARun
import LoRATraining

/// A job on the tiny test model in a fresh folder: data files of a counting task (prompt →
/// completion), a job file, and helpers to run it on thread-ranks and read its outputs.
struct RunFixture {
  /// The tiny test model's weights (vocabulary of 96).
  static let weights = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("../LoRAModelTests/Fixtures/tiny-tied").standardized

  /// A byte-level BPE `tokenizer.json` for the digits and the space (ids 0–10, no merges),
  /// with `<|endoftext|>` (11) as its end of sequence: all the data here uses.
  static let tokenizer = """
    {"version": "1.0", "added_tokens": [{"id": 11, "content": "<|endoftext|>", "special": true}],
     "normalizer": null, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
     "post_processor": null, "decoder": {"type": "ByteLevel"},
     "model": {"type": "BPE", "vocab": {\((0..<10).map { "\"\($0)\": \($0)" }.joined(separator: ", ")), "\u{0120}": 10},
               "merges": []}}
    """

  let folder: URL
  /// The tiny model as a Hugging Face folder with the tokenizer above.
  var model: String { folder.appendingPathComponent("model").path }

  init() throws {
    folder = FileManager.default.temporaryDirectory.appendingPathComponent("lora-run-\(UUID().uuidString)")
    let model = folder.appendingPathComponent("model")
    try FileManager.default.createDirectory(at: model, withIntermediateDirectories: true)
    for file in ["config.json", "model.safetensors"] {
      try FileManager.default.copyItem(
        at: Self.weights.appendingPathComponent(file), to: model.appendingPathComponent(file))
    }
    try write("model/tokenizer.json", Self.tokenizer)
    try write("model/tokenizer_config.json", #"{"eos_token": "<|endoftext|>"}"#)
    for (name, count, seed) in [("a", 48, 1), ("b", 40, 2), ("c", 32, 3)] {
      try write("\(name).jsonl", Self.examples(count, seed: seed))
      try write("\(name)-valid.jsonl", Self.examples(8, seed: seed + 10))
    }
  }

  /// `count` lines of `{"prompt": "3 4 5", "completion": " 6 7"}` from a seeded start.
  static func examples(_ count: Int, seed: Int) -> String {
    (0..<count).map { i in
      let start = (i * 7 + seed * 13) % 50
      let prompt = (start..<start + 3).map(String.init).joined(separator: " ")
      let completion = (start + 3..<start + 5).map(String.init).joined(separator: " ")
      return "{\"prompt\": \"\(prompt)\", \"completion\": \" \(completion)\"}"
    }.joined(separator: "\n") + "\n"
  }

  @discardableResult
  func write(_ name: String, _ text: String) throws -> String {
    let url = folder.appendingPathComponent(name)
    try Data(text.utf8).write(to: url)
    return url.path
  }

  /// A job file with `defaults` and `adapters` (YAML lines, indented by the caller).
  func job(_ adapters: String, defaults: String = "", placement: String = "auto") throws -> JobFile {
    let path = try write(
      "jobs.yaml",
      """
      model: \(model)
      output: out
      placement: \(placement)
      defaults:
        steps: 6
        batch_size: 4
        micro_batch: 2
        max_seq_len: 16
        lr: 1.0e-2
        rank: 4
        alpha: 8
        targets: [q_proj, v_proj]
        checkpoint_every: 2
        format: prompt_completion
      \(defaults)
      adapters:
      \(adapters)
      """)
    return try JobFile.load(path: path)
  }

  /// Runs `job` on `ranks` thread-ranks; every event with the world rank that emitted it,
  /// and whether the job stopped. `stopAfter(event)` may ask the run to stop.
  func run(
    _ job: JobFile, ranks: Int, stop: StopRequest = StopRequest(),
    onEvent: @escaping @Sendable (RunEvent) -> Void = { _ in }
  ) throws -> (events: [RunEvent], stopped: Bool) {
    let log = EventLog()
    let stopped = try LocalCommunicator.run(ranks: ranks) { comm in
      try JobRunner(
        job: job, stop: stop,
        emit: { event in
          log.append(event)
          onEvent(event)
        }
      ).execute(world: comm)
    }
    return (log.events, stopped[0])
  }

  /// The output folder of adapter `name`.
  func output(_ name: String) -> URL { folder.appendingPathComponent("out/\(name)") }

  /// The lines of adapter `name`'s metrics.jsonl, decoded.
  func metrics(_ name: String) throws -> [[String: Any]] {
    let text = try String(contentsOf: output(name).appendingPathComponent("metrics.jsonl"), encoding: .utf8)
    return text.split(separator: "\n").compactMap {
      try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
    }
  }

  /// The steps of adapter `name`'s lines with `event` (in file order).
  func steps(_ name: String, event: String) throws -> [Int] {
    try metrics(name).filter { $0["event"] as? String == event }.compactMap { $0["step"] as? Int }
  }

  /// The bytes of adapter `name`'s final adapter.
  func adapterBytes(_ name: String) throws -> Data {
    try Data(contentsOf: output(name).appendingPathComponent("adapter_model.safetensors"))
  }
}

/// Events collected from every rank thread.
final class EventLog: @unchecked Sendable {
  private let lock = NSLock()
  private var stored: [RunEvent] = []
  func append(_ event: RunEvent) { lock.withLock { stored.append(event) } }
  var events: [RunEvent] { lock.withLock { stored } }
}
