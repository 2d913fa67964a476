import ArgumentParser
import Foundation
import LoRACheckpoint
import LoRAComm
import LoRAFormats
import LoRAKernels
import LoRAModel
import LoRARun

/// `swift-lora-dist inspect`: what a model file holds.
struct Inspect: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Show a model's architecture, tensors and tokenizer, or a checkpoint's contents.",
    discussion: """
      Reads the header of a GGUF file or a Hugging Face folder without loading the weights; \
      --load also builds the Float32 copy the trainer uses and reports its time and memory. \
      Given a checkpoint (.sldckpt), shows its header, tensors and compression; --verify checks \
      every checksum, --filters measures what each filter chain gives.

      Examples:
        swift-lora-dist inspect ~/.cache/swift-lora-dist/SmolLM2-135M-Instruct.Q4_1.gguf
        swift-lora-dist inspect ./my-model-folder --all-tensors
        swift-lora-dist inspect model.gguf --load
        swift-lora-dist inspect out/my-adapter/checkpoints/step-00000100.sldckpt --verify --filters
      """)

  @Argument(help: "A GGUF file, a Hugging Face folder, or a checkpoint file.")
  var model: String

  @Flag(name: .customLong("all-tensors"), help: "List every tensor, not just the first layer's.")
  var allTensors = false

  @Flag(help: "Load the weights as the trainer does and report load time and resident memory.")
  var load = false

  @Flag(help: "Checkpoints: decode every tensor and check every checksum.")
  var verify = false

  @Flag(help: "Checkpoints: the stored size of each tensor under every filter chain.")
  var filters = false

  func run() throws {
    if AdapterFile.kind(of: model) == .checkpoint,
      !FileManager.default.fileExists(atPath: model + "/config.json")
    {
      var isFolder: ObjCBool = false
      _ = FileManager.default.fileExists(atPath: model, isDirectory: &isFolder)
      return try inspectCheckpoint(
        isFolder.boolValue ? CheckpointStore.newestValid(model).reader.path : model)
    }
    let files = try ModelFiles.open(model)
    var lines: [String] = []
    var tensors: [(name: String, type: String, shape: [Int])] = []
    let config: LlamaConfig
    switch files {
    case .gguf(let gguf):
      lines.append("model: \(gguf.path) (GGUF v\(gguf.version), \(formatBytes(gguf.fileSize)))")
      if let name = gguf.metadata["general.name"]?.string { lines.append("name: \(name)") }
      config = try LlamaConfig(gguf: gguf)
      tensors = gguf.tensors.map { ($0.name, $0.typeName, $0.shape) }
    case .huggingFace(let folder):
      let collection = try SafetensorsCollection(folder: folder)
      let bytes = collection.files.reduce(0) {
        $0 + (try? FileManager.default.attributesOfItem(atPath: $1.path)[.size] as? Int ?? 0)!
      }
      lines.append(
        "model: \(folder) (Hugging Face folder, \(collection.files.count) safetensors file(s), \(formatBytes(bytes)))"
      )
      config = try LlamaConfig(configJSON: URL(fileURLWithPath: folder).appendingPathComponent("config.json"))
      tensors = collection.tensorNames.compactMap { name in
        collection.info(name).map { (name, $0.dtype, $0.shape) }
      }
    }
    lines.append(
      "architecture: \(config.architecture): \(config.layers) layers, width \(config.hiddenSize), "
        + "\(config.heads) heads / \(config.kvHeads) kv heads of \(config.headSize), MLP \(config.intermediateSize), "
        + "vocabulary \(config.vocabularySize), context \(config.contextLength)")
    lines.append(
      "  RoPE theta \(config.ropeTheta)\(config.ropeScaling.map { ", scaling \($0.type) ×\($0.factor)" } ?? ""), "
        + "RMSNorm eps \(config.rmsNormEps), \(config.tiedEmbeddings ? "output tied to the embedding" : "separate output head")"
        + (config.attentionBias ? ", q/k/v biases" : ""))
    let parameters = tensors.reduce(0) { $0 + $1.shape.reduce(1, *) }
    lines.append(
      "parameters: \(grouped(parameters)) in \(tensors.count) tensors (\(formatBytes(parameters * 4)) as Float32)"
    )
    let types = Dictionary(grouping: tensors, by: \.type).map { "\($0.key) ×\($0.value.count)" }.sorted()
    lines.append("tensor types: \(types.joined(separator: ", "))")

    do {
      let tokenizer = try Tokenizer.load(files)
      func named(_ id: Int?) -> String {
        id.map { "\($0) \(tokenizer.token(of: Int32($0)) ?? "?")" } ?? "none"
      }
      let split = tokenizer.algorithm == .byteLevelBPE ? "pre-tokenizer \(tokenizer.preTokenizer), " : ""
      var summary =
        "tokenizer: \(tokenizer.algorithm), \(tokenizer.vocabularySize) tokens, \(split)"
        + "bos \(named(tokenizer.bosID)), eos \(named(tokenizer.eosID)), pad \(named(tokenizer.padID))"
      if case .gguf(let gguf) = files, let merges = gguf.metadata["tokenizer.ggml.merges"]?.array?.count {
        summary += ", \(merges) merges"
      }
      lines.append(summary)
    } catch {
      lines.append("tokenizer: none usable (\(error))")
    }
    if let template = files.chatTemplate {
      let format = ChatFormat.detect(template: template)
      lines.append("chat template: \(format?.rawValue ?? "not one this tool renders (\(ChatFormat.names))")")
    }

    if load {
      let (llama, origin) = try LlamaModel.load(files)
      lines.append(
        "loaded in \(format(origin.loadSeconds, 2)) s: \(origin.convertedTensors) tensors converted to Float32, "
          + "\(origin.inPlaceTensors) used in place; peak resident memory \(formatBytes(ResidentMemory.peakBytes()))"
      )
      _ = llama
    }

    lines.append("")
    var rows: [[String]] = [["tensor", "type", "shape"]]
    let shown = allTensors ? tensors : tensors.filter { !isLaterLayer($0.name) }
    rows += shown.map { [$0.name, $0.type, "[" + $0.shape.map(String.init).joined(separator: ", ") + "]"] }
    lines += renderTable(rows, rightAligned: [])
    if shown.count < tensors.count {
      lines.append(
        "(\(tensors.count - shown.count) tensors of the other layers not shown; --all-tensors lists them)")
    }
    print(lines.joined(separator: "\n"))
  }

  /// Whether `name` belongs to a layer other than the first (blk.N. / model.layers.N. with N > 0).
  private func isLaterLayer(_ name: String) -> Bool {
    let parts = name.split(separator: ".")
    if parts.count > 1, parts[0] == "blk", let n = Int(parts[1]) { return n > 0 }
    if parts.count > 2, parts[1] == "layers", let n = Int(parts[2]) { return n > 0 }
    return false
  }
}
