import Foundation
import LoRACheckpoint
import LoRACoordinator
import LoRAFormats
import LoRAKernels
import LoRAModel
import LoRATraining

/// A parser of untrusted input, driven by one fuzz input: the bytes are written to a scratch
/// file (every parser here reads files) and parsed as a user's file would be. Thrown errors
/// are the expected answer to bad input; a crash, a hang or a runaway allocation is a bug.
/// `scripts/fuzz` runs these under libFuzzer (`sld-fuzz`); `FuzzRegressionTests` replays
/// their seed corpora and every input that once found a bug.
public enum FuzzTarget: String, CaseIterable, Sendable {
  /// GGUF: header, metadata, tensor table, then a configuration and tokenizer read from it,
  /// and each tensor's first values.
  case gguf
  /// safetensors: the JSON header and tensor table, then each tensor read.
  case safetensors
  /// Our checkpoint: header, tensor table, filters and LZ4 frames, read as an adapter.
  case checkpoint
  /// A GGUF LoRA adapter for the tiny model.
  case ggufLoRA = "gguf-lora"
  /// PEFT's adapter_config.json (beside a valid adapter_model.safetensors).
  case peftConfig = "peft-config"
  /// A Hugging Face tokenizer.json, then a few strings encoded and decoded.
  case tokenizerJSON = "tokenizer-json"
  /// JSON Lines data in each of the four formats, and as DPO's preference pairs.
  case jsonl
  /// A YAML job file.
  case jobFile = "job-file"
  /// `train --config`'s YAML file.
  case trainConfig = "train-config"
  /// `serve`'s HTTP request bodies (FuzzTarget+ServeRequest.swift).
  case serveRequest = "serve-request"

  /// Parses `bytes` as this target's input; returns normally whatever the verdict.
  public func run(_ bytes: [UInt8], _ context: FuzzContext) {
    if self == .serveRequest {  // a request body, not a file
      Self.serveRequest(bytes, tokenizer: context.tokenizer)
      return
    }
    let file = context.scratch.appendingPathComponent(fileName)
    guard (try? Data(bytes).write(to: file)) != nil else { return }
    do {
      switch self {
      case .gguf:
        let gguf = try GGUFFile(path: file.path)
        _ = try? LlamaConfig(gguf: gguf)
        _ = try? Tokenizer.load(ModelFiles.open(file.path))
        for info in gguf.tensors.prefix(8) where info.elementCount <= 1 << 16 {
          _ = try? gguf.tensor(info.name)
        }
      case .safetensors:
        let file = try SafetensorsFile(path: file.path)
        for name in file.tensors.keys.sorted().prefix(8) { _ = try? file.tensor(name) }
      case .checkpoint:
        _ = try LoRAAdapter.load(checkpoint: CheckpointReader(path: file.path))
      case .ggufLoRA:
        _ = try LoRAAdapter.loadGGUFLoRA(path: file.path, model: context.model)
      case .peftConfig:
        _ = try LoRAAdapter.loadPEFT(from: context.scratch.path, model: context.model)
      case .tokenizerJSON:
        let tokenizer = try Tokenizer(tokenizerJSON: file)
        for text in ["Hello, world!", " 12 + 30 = 42\n", "naïve café 日本"] {
          _ = tokenizer.decode(tokenizer.encode(text, withBOS: true))
        }
      case .jsonl:
        for format in DataFormat.allCases {
          _ = try? DatasetLoader.load(
            path: file.path, tokenizer: context.tokenizer,
            options: DatasetOptions(
              format: format, maxSequenceLength: 64, skipBadLines: format == .auto, chatFormat: .chatML))
        }
        _ = try? PreferenceLoader.load(
          path: file.path, tokenizer: context.tokenizer,
          options: DatasetOptions(maxSequenceLength: 64, chatFormat: .chatML))
      case .jobFile:
        _ = try JobFile.load(path: file.path)
      case .trainConfig:
        _ = try TrainConfiguration.load(yamlFile: file.path)
      case .serveRequest:
        break
      }
    } catch {
      // A clear refusal: what bad input should get.
    }
  }

  /// The scratch file's name (PEFT reads a folder: its config by name).
  var fileName: String {
    switch self {
    case .peftConfig: return "adapter_config.json"
    case .jsonl: return "data.jsonl"
    case .jobFile: return "jobs.yaml"
    case .trainConfig: return "run.yaml"
    case .tokenizerJSON: return "tokenizer.json"
    default: return "input"
    }
  }
}

/// What every target needs besides its input: a scratch folder, the tiny model's
/// configuration, a byte-level tokenizer, and a valid adapter_model.safetensors for PEFT.
public final class FuzzContext: @unchecked Sendable {
  public let scratch: URL
  public let model: LlamaConfig
  public let tokenizer: Tokenizer

  /// - fixtures: the folder holding `tiny-tied/` (Tests/LoRAModelTests/Fixtures).
  public init(fixtures: URL) throws {
    scratch = FileManager.default.temporaryDirectory.appendingPathComponent(
      "sld-fuzz-\(ProcessInfo.processInfo.processIdentifier)-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    model = try LlamaConfig(configJSON: fixtures.appendingPathComponent("tiny-tied/config.json"))
    let tokenizerFile = scratch.appendingPathComponent("base-tokenizer.json")
    try Data(FuzzContext.tokenizerJSON.utf8).write(to: tokenizerFile)
    tokenizer = try Tokenizer(tokenizerJSON: tokenizerFile)
    // PEFT's weights beside the fuzzed config: a q/v adapter of rank 2.
    let adapter = try LoRAAdapter(config: LoRAConfig(r: 2, loraAlpha: 4), model: model, seed: 1)
    try adapter.savePEFT(to: scratch.path + "/peft-seed", baseModel: "tiny")
    try FileManager.default.copyItem(
      at: scratch.appendingPathComponent("peft-seed/adapter_model.safetensors"),
      to: scratch.appendingPathComponent("adapter_model.safetensors"))
  }

  deinit { try? FileManager.default.removeItem(at: scratch) }

  /// Seed inputs made here rather than committed: what our own writers produce for the tiny
  /// model (a checkpoint, a GGUF LoRA file, a PEFT config that fits the weights beside it,
  /// the tokenizer above).
  public func generatedSeeds(_ target: FuzzTarget) throws -> [[UInt8]] {
    let adapter = try LoRAAdapter(
      config: LoRAConfig(r: 2, loraAlpha: 4, virtualTokens: .init(kind: .prefix, tokens: 2, projection: 3)),
      model: model, seed: 2)
    let plain = try LoRAAdapter(config: LoRAConfig(r: 2, loraAlpha: 4), model: model, seed: 1)
    let folder = scratch.appendingPathComponent("seeds-\(target.rawValue)")
    try? FileManager.default.removeItem(at: folder)
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    func bytes(_ name: String) throws -> [UInt8] {
      Array(try Data(contentsOf: folder.appendingPathComponent(name)))
    }
    switch target {
    case .checkpoint:
      for (name, a) in [("virtual", adapter), ("plain", plain)] {
        try a.saveWeightsCheckpoint(
          to: folder.appendingPathComponent(name).path,
          base: .init(fingerprint: "f", source: "tiny", config: model))
      }
      return [try bytes("virtual"), try bytes("plain")]
    case .ggufLoRA:
      try plain.saveGGUFLoRA(to: folder.appendingPathComponent("a.gguf").path, base: model, baseName: "tiny")
      return [try bytes("a.gguf")]
    case .peftConfig:
      try plain.savePEFT(to: folder.appendingPathComponent("peft").path, baseModel: "tiny")
      return [try bytes("peft/adapter_config.json")]
    case .tokenizerJSON:
      return [Array(FuzzContext.tokenizerJSON.utf8)]
    default:
      return []
    }
  }

  /// A byte-level BPE tokenizer of the digits, the space and a few letters, with an end of
  /// sequence token (the run tests' tokenizer).
  static let tokenizerJSON = """
    {"version": "1.0", "added_tokens": [{"id": 11, "content": "<|endoftext|>", "special": true}],
     "normalizer": null, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
     "post_processor": null, "decoder": {"type": "ByteLevel"},
     "model": {"type": "BPE", "vocab": {\((0..<10).map { "\"\($0)\": \($0)" }.joined(separator: ", ")), "\u{0120}": 10},
               "merges": []}}
    """
}
