import ArgumentParser
import Foundation
import LoRACheckpoint
import LoRAFormats
import LoRAKernels
import LoRAModel
import LoRARun

/// `swift-lora-dist import`: a PEFT adapter (or GGUF LoRA) into the native checkpoint format.
struct Import: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "import",
    abstract: "Convert a PEFT adapter folder or a GGUF LoRA into a weights-only checkpoint for a base model.",
    discussion: """
      The base model is loaded to check that the adapter fits it (every target module exists \
      with the adapter's shapes) and to record its fingerprint, so later commands refuse to \
      apply the checkpoint to another base.

      Examples:
        swift-lora-dist import ./peft-adapter --model model.gguf --output adapter.sldckpt
        swift-lora-dist import my-lora.gguf --model model.gguf --output adapter.sldckpt --precision bf16
      """)

  @Argument(help: "A PEFT adapter folder or a GGUF LoRA file.") var adapter: String
  @OptionGroup var base: BaseModelOptions
  @Option(help: "The checkpoint file to write.") var output: String
  @Option(help: "Stored precision: f32, bf16 or f16 (default f32).") var precision: String = "f32"
  @Flag(help: "Replace an existing output file.") var overwrite = false

  func validate() throws {
    guard Tensor.ByteEncoding(rawValue: precision) != nil else {
      throw ValidationError("--precision must be f32, bf16 or f16, got '\(precision)'")
    }
  }

  func run() throws {
    guard let kind = AdapterFile.kind(of: adapter), kind != .checkpoint else {
      throw ValidationError(
        "\(adapter): expected a PEFT adapter folder (adapter_config.json) or a GGUF LoRA file")
    }
    if FileManager.default.fileExists(atPath: output) && !overwrite {
      throw ValidationError("\(output) exists; choose another --output or pass --overwrite")
    }
    let files = try ModelFiles.open(base.model)
    let (llama, _) = try LlamaModel.load(files)
    let (lora, _) = try AdapterFile.load(adapter, model: llama, files: files)
    let base = CheckpointHeader.Base(
      fingerprint: BaseFingerprint.of(llama, files: files), source: base.model, config: llama.config)
    try lora.saveWeightsCheckpoint(
      to: output, base: base, precision: Tensor.ByteEncoding(rawValue: precision)!, overwrite: overwrite)
    print(
      "imported \(adapter) (\(kind.rawValue), \(lora.modules.count) modules, \(grouped(lora.parameterCount)) parameters) "
        + "as \(output) (\(formatBytes(fileSize(output))), base \(BaseFingerprint.short(base.fingerprint))…)")
  }
}
