import ArgumentParser
import Foundation
import LoRACheckpoint
import LoRAFormats
import LoRAModel
import LoRATraining

/// `swift-lora-dist resize`: an adapter at another rank, by truncated SVD of each ΔW (shrink)
/// or with new zero directions (grow).
struct Resize: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Shrink an adapter by truncated SVD of each ΔW, or grow it with its output unchanged.",
    discussion: """
      --rank R sets every module to rank R: below its rank, the top R singular directions of \
      ΔW = s·B·A are kept (computed through the r×r core, LAPACK in double precision); above \
      it, the adapter grows with new directions that start at zero in B, so the model's \
      output does not change and training can go on from it. --energy F instead shrinks each \
      module to the fewest directions keeping a share F of ‖ΔW‖²_F (per-module ranks go to \
      rank_pattern). Each module keeps its scale s, so alpha moves with the rank (PEFT reads \
      the result as usual). With --data, prints the validation loss before and after.

      Examples:
        swift-lora-dist resize --model model.gguf --adapter out/r64 --rank 8 --output out/r64-to-8
        swift-lora-dist resize --model model.gguf --adapter out/r64 --energy 0.99 --output out/r64-e99 --data valid.jsonl
        swift-lora-dist resize --model model.gguf --adapter out/r4 --rank 16 --output out/r4-grown
      """)

  @OptionGroup var base: BaseModelOptions
  @Option(help: "The adapter: a training output folder, a checkpoint, a PEFT folder or a GGUF LoRA file.")
  var adapter: String
  @Flag(help: "Use a checkpoint even if it was trained on a base with another fingerprint.") var force = false
  @Option(help: "The new rank of every module.") var rank: Int?
  @Option(help: "Keep this share of each ΔW's squared Frobenius norm, in (0, 1].") var energy: Double?
  @OptionGroup var destination: AdapterWriteOptions
  @Option(help: "Validation data (JSON Lines): the loss before and after.") var data: String?
  @Option(name: .customLong("max-seq-len"), help: "Longest sequence of --data in tokens.") var maxSeqLen = 512
  @Option(help: "Seed of a grown adapter's new A rows.") var seed: UInt64 = 0
  @OptionGroup var threading: ThreadOptions
  @OptionGroup var json: JSONOutputOptions

  func validate() throws {
    guard (rank == nil) != (energy == nil) else {
      throw ValidationError("give exactly one of --rank and --energy")
    }
    if let rank, rank < 1 { throw ValidationError("--rank must be at least 1, got \(rank)") }
    if let energy, !(energy > 0 && energy <= 1) {
      throw ValidationError("--energy must be in (0, 1], got \(energy)")
    }
  }

  struct Result: Encodable {
    var output: String
    var modules: [AdapterResize.Change]
    var lossBefore: Double?
    var lossAfter: Double?
  }

  func run() throws {
    threading.apply()
    let files = try ModelFiles.open(base.model)
    let (model, _) = try LlamaModel.load(files, precision: .f32)
    let (source, description) = try AdapterFile.load(adapter, model: model, files: files, force: force)
    let target: AdapterResize.Target = rank.map { .rank($0) } ?? .energy(energy!)
    let (resized, changes) = try AdapterResize.resized(source, model: model.config, to: target, seed: seed)
    var result = Result(output: destination.output, modules: changes)
    if let data {
      let tokenizer = try Tokenizer.load(files)
      let examples = try DatasetLoader.load(
        path: data, tokenizer: tokenizer,
        options: DatasetOptions(maxSequenceLength: maxSeqLen).resolvingChatFormat(
          template: files.chatTemplate, tokenizer: tokenizer)
      ).examples
      let pad = Int32(tokenizer.padID ?? tokenizer.eosID ?? 0)
      func loss(_ lora: LoRAAdapter) -> Double {
        Evaluator(model: model, adapter: lora, microBatch: 4, padID: pad).meanLoss(of: examples).loss
      }
      (result.lossBefore, result.lossAfter) = (loss(source), loss(resized))
    }
    try destination.write(resized, config: model.config, baseName: base.model)
    if json.json {
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.sortedKeys]
      print(String(decoding: try encoder.encode(result), as: UTF8.self))
      return
    }
    let ranks = Dictionary(grouping: changes, by: { [$0.from, $0.to] }).sorted {
      $0.key.lexicographicallyPrecedes($1.key)
    }
    .map { "\($0.key[0]) → \($0.key[1]) ×\($0.value.count)" }
    let kept = changes.map(\.energyKept)
    print("\(description): \(changes.count) modules, rank \(ranks.joined(separator: ", "))")
    print(
      "energy kept: least \(String(format: "%.4f", kept.min() ?? 1)), mean "
        + String(format: "%.4f", kept.reduce(0, +) / Double(max(kept.count, 1))))
    if let before = result.lossBefore, let after = result.lossAfter {
      print(
        "validation loss: \(String(format: "%.4f", before)) before, \(String(format: "%.4f", after)) after")
    }
    print(
      "wrote \(destination.output) (\(destination.format.rawValue), \(resized.parameterCount) parameters)")
  }
}
