import ArgumentParser
import Foundation
import LoRACheckpoint
import LoRAFormats
import LoRAModel
import LoRARun

/// `swift-lora-dist analyze`: the spectrum of each adapted module's update, and how two
/// adapters' top directions overlap (the LoRA paper's section 7).
struct Analyze: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Singular values, ranks and subspace similarity of adapters' updates ΔW = s·B·A.",
    discussion: """
      For each adapted module: the singular values of ΔW (through the r×r core of B and A, \
      never the full matrix; LAPACK in double precision), the share of ‖ΔW‖²_F in the top k, \
      the effective and stable rank, the fewest directions keeping 90% and 99%, and, against \
      the frozen weight W, the amplification factor ‖ΔW‖_F / ‖Uᵀ W V‖_F and the share of ΔW \
      inside W's top-r directions (Hu et al. 2021, section 7.3; --no-base skips them).

      With two adapters of the same base (e.g. r=8 and r=64 of one task, or two seeds): the \
      normalized subspace similarity φ(i, j) of their top right singular directions per \
      module (section 7.2), beside the same measure for random Gaussian subspaces. Modules \
      only one adapter has are named and left out. --report writes an HTML page with the \
      charts and heat maps (docs/rank-analysis.md).

      Examples:
        swift-lora-dist analyze --model model.gguf --adapter out/r8
        swift-lora-dist analyze --model model.gguf --adapter out/r8 --adapter out/r64 --report analysis.html
        swift-lora-dist analyze --model model.gguf --adapter out/r8 --no-base --json > spectrum.json
      """)

  @OptionGroup var base: BaseModelOptions
  @OptionGroup var adapters: AdapterOptions
  @Option(help: "Write the HTML report here.") var report: String?
  @Flag(name: .customLong("no-base"), help: "Skip the measures against the frozen weights (no SVD of W).")
  var noBase = false
  @Option(help: "Seed of the random baselines.") var seed: UInt64 = 0
  @Flag(help: "Replace an existing report.") var overwrite = false
  @OptionGroup var output: JSONOutputOptions

  func validate() throws {
    guard (1...2).contains(adapters.adapter.count) else {
      throw ValidationError("give one or two --adapter options (got \(adapters.adapter.count))")
    }
  }

  func run() throws {
    let files = try ModelFiles.open(base.model)
    let (model, _) = try LlamaModel.load(files, precision: .f32)
    let loaded = try adapters.adapter.map {
      try AdapterFile.load($0, model: model, files: files, force: adapters.force)
    }
    let analysis = try AdapterAnalysis(adapters: loaded, model: model, readBase: !noBase, seed: seed)
    if let report {
      let file = try AtomicFile(path: report, overwrite: overwrite)
      try file.write(Array(AnalysisReport.html(analysis).utf8))
      try file.commit()
    }
    if output.json {
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.sortedKeys]
      print(String(decoding: try encoder.encode(analysis), as: UTF8.self))
      return
    }
    for (index, modules) in analysis.modules.enumerated() {
      print("adapter \(index + 1): \(analysis.adapters[index])")
      print(summary(modules))
    }
    if !analysis.comparisons.isEmpty {
      let phi11 = analysis.comparisons.map { $0.similarity.phi[0][0] }
      let mean = analysis.comparisons.map { AnalysisReport.meanPhi($0.similarity) }
      let random = analysis.comparisons.map { AnalysisReport.meanPhi($0.randomBaseline) }
      print(
        "subspace similarity over \(analysis.comparisons.count) modules: φ(1,1) median \(format(median(phi11))), "
          + "mean φ for i, j ≤ 8 median \(format(median(mean))) against \(format(median(random))) for random subspaces"
      )
    }
    for name in analysis.unmatched { print("not compared: \(name)") }
    if let report { print("report: \(report)") }
  }

  /// Medians over the modules, per target.
  func summary(_ modules: [AdapterAnalysis.Module]) -> String {
    var lines = [
      "  target  modules  rank  eff. rank  stable rank  k(90%)  k(99%)  amplification  ΔW in W's top-r"
    ]
    for target in Array(Set(modules.map(\.target))).sorted() {
      let rows = modules.filter { $0.target == target }
      func m(_ values: [Double]) -> String { values.isEmpty ? "–" : format(median(values)) }
      lines.append(
        "  "
          + [
            target.padding(6), "\(rows.count)".padding(7), "\(rows.map(\.rank).max() ?? 0)".padding(4),
            m(rows.map(\.effectiveRank)).padding(9), m(rows.map(\.stableRank)).padding(11),
            m(rows.map { Double($0.rankFor90) }).padding(6), m(rows.map { Double($0.rankFor99) }).padding(6),
            m(rows.compactMap { $0.amplification?.factor }).padding(13),
            m(rows.compactMap { $0.amplification?.deltaInBaseTopDirections }),
          ].joined(separator: "  "))
    }
    return lines.joined(separator: "\n") + "\n  (medians over layers)"
  }

  func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return .nan }
    return sorted.count % 2 == 1
      ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
  }

  func format(_ value: Double) -> String { String(format: value >= 100 ? "%.0f" : "%.3g", value) }
}

extension String {
  fileprivate func padding(_ width: Int) -> String {
    count >= width ? self : self + String(repeating: " ", count: width - count)
  }
}
