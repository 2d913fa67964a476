import ArgumentParser
import Foundation
import LoRACheckpoint
import LoRAFormats
import LoRAModel

/// `swift-lora-dist combine`: several adapters → one, computed on each module's ΔW.
struct Combine: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Combine adapters into one on each module's ΔW: exact sum, SVD-compressed, TIES or DARE.",
    discussion: """
      --method cat writes the exact weighted sum Σ wᵢ·ΔWᵢ with the ranks concatenated \
      (PEFT's add_weighted_adapter "cat"); svd cuts that sum to --rank by truncated SVD \
      (exact when --rank reaches the sum's rank); ties and dare_linear / dare_ties prune each \
      ΔWᵢ to --density (by magnitude, or at random with a seed, rescaled), merge them as PEFT \
      defines (TIES: signs elected, agreeing entries averaged), then cut to --rank. The result \
      has scale 1 (lora_alpha = r) and is an ordinary PEFT folder or GGUF LoRA. Adapters that \
      adapt different modules are refused, naming them, unless --skip-missing keeps the \
      modules they share. Default --rank: the largest rank of the inputs.

      Examples:
        swift-lora-dist combine --model model.gguf --adapter out/a --adapter out/b --method cat --output out/a+b
        swift-lora-dist combine --model model.gguf --adapter out/a --adapter out/b --weights 0.7,0.3 --method svd --rank 8 --output out/mix
        swift-lora-dist combine --model model.gguf --adapter out/a --adapter out/b --method ties --density 0.2 --output out/ties
      """)

  @OptionGroup var base: BaseModelOptions
  @OptionGroup var adapters: AdapterOptions
  @Option(help: "Comma-separated weights, one per adapter (default 1 each).") var weights: String?
  @Option(help: "cat, svd, ties, dare_linear or dare_ties.") var method: String = "cat"
  @Option(help: "Rank of the result (all methods but cat).") var rank: Int?
  @Option(help: "Share of each ΔW's entries TIES and DARE keep, in (0, 1].") var density: Double = 1
  @Option(help: "Seed of DARE's random pruning.") var seed: UInt64 = 0
  @Flag(name: .customLong("skip-missing"), help: "Combine only the modules every adapter adapts.")
  var skipMissing = false
  @OptionGroup var destination: AdapterWriteOptions
  @OptionGroup var json: JSONOutputOptions

  func validate() throws {
    guard adapters.adapter.count >= 2 else {
      throw ValidationError("give at least two --adapter options (got \(adapters.adapter.count))")
    }
    guard AdapterCombine.Method(rawValue: method) != nil else {
      throw ValidationError(
        "--method '\(method)' is not one of \(AdapterCombine.Method.allCases.map(\.rawValue).joined(separator: ", "))"
      )
    }
    _ = try parsedWeights()
  }

  func parsedWeights() throws -> [Double] {
    guard let weights else { return Array(repeating: 1, count: adapters.adapter.count) }
    return try weights.split(separator: ",").map {
      guard let value = Double($0.trimmingCharacters(in: .whitespaces)), value.isFinite else {
        throw ValidationError("--weights: '\($0)' is not a number")
      }
      return value
    }
  }

  struct Result: Encodable {
    var output: String
    var method: String
    var modules: [AdapterCombine.Module]
    var leftOut: [String]
  }

  func run() throws {
    let files = try ModelFiles.open(base.model)
    let (model, _) = try LlamaModel.load(files, precision: .f32)
    let loaded = try adapters.adapter.map {
      try AdapterFile.load($0, model: model, files: files, force: adapters.force).adapter
    }
    let options = AdapterCombine.Options(
      method: AdapterCombine.Method(rawValue: method)!, weights: try parsedWeights(), rank: rank,
      density: density,
      seed: seed, skipMissing: skipMissing)
    let (combined, modules, leftOut) = try AdapterCombine.combine(
      loaded, model: model.config, options: options)
    try destination.write(combined, config: model.config, baseName: base.model)
    if json.json {
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.sortedKeys]
      let result = Result(output: destination.output, method: method, modules: modules, leftOut: leftOut)
      print(String(decoding: try encoder.encode(result), as: UTF8.self))
      return
    }
    let kept = modules.map(\.energyKept)
    print(
      "\(method) of \(loaded.count) adapters: \(modules.count) modules at rank \(combined.config.r), "
        + "energy kept least \(String(format: "%.4f", kept.min() ?? 1))")
    for name in leftOut { print("left out: \(name)") }
    print(
      "wrote \(destination.output) (\(destination.format.rawValue), \(combined.parameterCount) parameters)")
  }
}
