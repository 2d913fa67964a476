import ArgumentParser
import Foundation
import LoRACheckpoint
import LoRAKernels
import LoRAModel
import LoRARun

/// `swift-lora-dist export`: a checkpoint's adapter in the formats other tools read.
struct Export: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract:
      "Write a checkpoint's adapter as a PEFT folder, a GGUF LoRA for llama.cpp, or a weights-only checkpoint.",
    discussion: """
      SOURCE is a checkpoint file or a training output folder (its newest valid checkpoint). \
      The adapter's scale (alpha/r, or alpha/√r with rsLoRA, per-module rank and alpha) is carried \
      into each format so the exported adapter changes the model exactly as in training \
      (docs/exports.md). No base model is needed: the checkpoint records the base's shape.

      A tree node (a job adapter with parent:) holds only its own ΔW; --flatten writes one \
      ordinary adapter whose ΔW is the whole chain's, root to node, exactly (the ranks \
      concatenated), after checking each ancestor's fingerprint.

      Examples:
        swift-lora-dist export out/my-adapter --format peft --output out/my-adapter-peft
        swift-lora-dist export out/tree/narrow --flatten --format gguf --output narrow-with-ancestors.gguf
        swift-lora-dist export out/my-adapter/checkpoints/step-00000500.sldckpt --format gguf --output my-adapter.gguf
        swift-lora-dist export out/my-adapter --format checkpoint --precision bf16 --output my-adapter.sldckpt
      """)

  enum Format: String, ExpressibleByArgument, CaseIterable {
    case peft, gguf, checkpoint
  }

  @Argument(help: "A checkpoint file or a training output folder.") var source: String
  @Option(help: "peft, gguf or checkpoint (weights only).") var format: Format
  @Option(help: "Output folder (peft) or file (gguf, checkpoint).") var output: String
  @Option(help: "Precision of a weights-only checkpoint: f32, bf16 or f16 (default f32).")
  var precision: String = "f32"
  @Flag(help: "Replace an existing output.") var overwrite = false
  @Flag(help: "For a tree node: write its ancestors' ΔW and its own as one adapter.") var flatten = false

  func validate() throws {
    guard let encoding = Tensor.ByteEncoding(rawValue: precision) else {
      throw ValidationError("--precision must be f32, bf16 or f16, got '\(precision)'")
    }
    if encoding != .f32 && format != .checkpoint {
      throw ValidationError(
        "--precision \(precision) applies to --format checkpoint only (PEFT and GGUF exports are F32)")
    }
  }

  func run() throws {
    let (reader, _) = try CheckpointStore.newestValid(source)
    let own = try LoRAAdapter.load(checkpoint: reader)
    let base = reader.header.base
    var adapter = own
    var chain = ""
    if flatten {
      let (flattened, ancestors) = try AdapterChainRecord.applying(own, at: source, model: base.config)
      guard !ancestors.isEmpty else {
        throw ValidationError(
          "--flatten: \(source) is no tree node (no \(AdapterChainRecord.fileName) beside it)")
      }
      (adapter, chain) = (flattened, " over \(ancestors.joined(separator: " → ")), flattened")
    } else if let (record, _) = try AdapterChainRecord.of(source) {
      FileHandle.standardError.write(
        Data(
          ("note: \(source) is a tree node over \(record.ancestors.map(\.name).joined(separator: " → ")); "
            + "this export holds its own ΔW alone (--flatten writes the whole chain)\n").utf8))
    }
    switch format {
    case .peft:
      try adapter.savePEFT(to: output, baseModel: base.source, overwrite: overwrite)
    case .gguf:
      try adapter.saveGGUFLoRA(to: output, base: base.config, baseName: base.source, overwrite: overwrite)
    case .checkpoint:
      try adapter.saveWeightsCheckpoint(
        to: output, base: base, precision: Tensor.ByteEncoding(rawValue: precision)!,
        training: reader.header.training, overwrite: overwrite)
    }
    let size = fileSize(output)
    print(
      "exported \(reader.path)\(chain) (\(adapter.modules.count) modules, \(grouped(adapter.parameterCount)) parameters) "
        + "to \(output) (\(format.rawValue), \(formatBytes(size)))")
  }
}

/// Bytes of a file, or of the files in a folder.
func fileSize(_ path: String) -> Int {
  var isFolder: ObjCBool = false
  guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else { return 0 }
  let paths =
    isFolder.boolValue
    ? ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).map { path + "/" + $0 } : [path]
  return paths.reduce(0) {
    $0 + ((try? FileManager.default.attributesOfItem(atPath: $1)[.size] as? Int) ?? 0)
  }
}
