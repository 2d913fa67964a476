import ArgumentParser
import Foundation
import LoRACheckpoint
import LoRAFormats
import LoRAKernels
import LoRAModel
import LoRARun

/// `swift-lora-dist merge`: a base model with adapters merged in, written as a new model.
struct Merge: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Merge LoRA adapters into a base model and write it as GGUF or a safetensors folder.",
    discussion: """
      Each adapted weight becomes W0 + Σ weight·scale·B·A (every --weight defaults to 1). \
      GGUF output needs a GGUF base: its tokenizer and metadata are copied and q/k rows are \
      stored as llama.cpp expects, so llama.cpp and this tool's generate read the result. \
      safetensors output needs a Hugging Face folder base: config.json and the tokenizer \
      files are copied beside model.safetensors. The output appears complete or not at all.

      Examples:
        swift-lora-dist merge --model model.gguf --adapter out/arithmetic --output merged.gguf
        swift-lora-dist merge --model model.gguf --adapter out/a --adapter out/b --weight 0.5 --weight 0.5 \
          --output ab.gguf --dtype f16
        swift-lora-dist merge --model ./SmolLM2-folder --adapter out/a --output ./merged --format safetensors
      """)

  @OptionGroup var base: BaseModelOptions

  @OptionGroup var adapters: AdapterOptions

  @Option(help: "Weight of each adapter, in --adapter order (default 1 each); repeat once per adapter.")
  var weight: [Double] = []

  @Option(help: "The merged model: a .gguf file, or a folder for --format safetensors.")
  var output: String

  @Option(help: "Output format: gguf or safetensors.")
  var format: String = "gguf"

  @Option(help: "Weight type: f32, f16 or bf16 (GGUF keeps 1-D tensors such as norms in f32).")
  var dtype: String = "f32"

  @Flag(help: "Replace an existing output.")
  var overwrite = false

  @OptionGroup var threading: ThreadOptions

  func validate() throws {
    guard !adapters.adapter.isEmpty else { throw ValidationError("give at least one --adapter") }
    guard weight.isEmpty || weight.count == adapters.adapter.count else {
      throw ValidationError(
        "\(weight.count) --weight value(s) for \(adapters.adapter.count) --adapter(s); give one --weight per --adapter, or none"
      )
    }
    guard MergedModel.Format(rawValue: format) != nil else {
      throw ValidationError("--format must be gguf or safetensors, not '\(format)'")
    }
    guard MergedModel.DType(rawValue: dtype) != nil else {
      throw ValidationError("--dtype must be f32, f16 or bf16, not '\(dtype)'")
    }
    if !overwrite && FileManager.default.fileExists(atPath: output) {
      throw ValidationError("\(output) already exists; choose another --output or pass --overwrite")
    }
  }

  func run() throws {
    threading.apply()
    let started = Date()
    let format = MergedModel.Format(rawValue: format)!
    let files = try ModelFiles.open(base.model)
    try MergedModel.check(format: format, base: files)
    let (llama, _) = try LlamaModel.load(files)
    let force = self.adapters.force
    let adapters = try self.adapters.adapter.map {
      try AdapterFile.load($0, model: llama, files: files, force: force).adapter
    }
    let merge = try MergedModel(
      files: files, model: llama, adapters: adapters, weights: weight.isEmpty ? nil : weight)
    try merge.write(
      to: output, format: format, dtype: MergedModel.DType(rawValue: dtype)!, overwrite: overwrite)
    let bytes = fileSize(output)
    print(
      "merged \(adapters.count) adapter(s) into \(output) (\(format.rawValue), \(dtype), \(formatBytes(bytes))) "
        + "in \(Merge.seconds(Date().timeIntervalSince(started))) s")
  }

  static func seconds(_ value: Double) -> String { String(format: "%.1f", value) }
}
