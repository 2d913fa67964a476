import Foundation
import LoRAFormats
import LoRAKernels
import LoRAModel
import Testing

@testable import swift_lora_dist

/// `generate` and `eval` with several adapters from one loaded base, on the default model
/// (its real shapes: the batched rows must equal each adapter alone, bit for bit).
@Suite(
  .enabled(
    if: FileManager.default.fileExists(atPath: ModelCommandTests.defaultModel),
    "the default model is not in the cache"
  ))
struct SeveralAdaptersTests {
  /// Two random q,v adapters of the default model saved as PEFT folders.
  static func adapters() throws -> (folder: URL, paths: [String]) {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent(
      "sld-several-\(UUID().uuidString.prefix(8))")
    let (model, _) = try LlamaModel.load(path: ModelCommandTests.defaultModel)
    var paths: [String] = []
    for i in 0..<2 {
      let config = LoRAConfig(r: 4, loraAlpha: 8, targetModules: ["q_proj", "v_proj"])
      let adapter = try LoRAAdapter(config: config, model: model.config, seed: UInt64(i))
      var random = SeededRandom(seed: UInt64(50 + i))
      for m in adapter.modules { for j in 0..<m.b.count { m.b[j] = (random.nextUnitFloat() - 0.5) * 0.2 } }
      let path = folder.appendingPathComponent("adapter\(i)").path
      try adapter.savePEFT(to: path, baseModel: "SmolLM2-135M-Instruct")
      paths.append(path)
    }
    return (folder, paths)
  }

  @Test func generateAnswersWithEachAdapterAsItWouldAlone() throws {
    let (folder, paths) = try Self.adapters()
    defer { try? FileManager.default.removeItem(at: folder) }
    let prompt = ["--prompt", "Define, as Ambrose Bierce would: LAWYER", "--max-tokens", "12", "--json"]
    let both = try CommandRunner.run(
      ["generate", "--model", ModelCommandTests.defaultModel, "--adapter", paths[0], "--adapter", paths[1]]
        + prompt)
    #expect(both.status == 0, "\(both.errors)")
    let lines = both.output.split(separator: "\n").map {
      try? JSONDecoder().decode(GenerateResult.self, from: Data($0.utf8))
    }
    #expect(lines.count == 2 && lines.allSatisfy { $0 != nil })
    for (i, path) in paths.enumerated() {
      let alone = try CommandRunner.run(
        ["generate", "--model", ModelCommandTests.defaultModel, "--adapter", path] + prompt)
      let single = try JSONDecoder().decode(GenerateResult.self, from: Data(alone.output.utf8))
      #expect(lines[i]?.adapter == path && lines[i]?.ids == single.ids, "adapter \(i)")
    }
    #expect(lines[0]?.ids != lines[1]?.ids, "the two adapters answer differently")
  }

  @Test func evalScoresEachAdapterMergedAsUnmerged() throws {
    let (folder, paths) = try Self.adapters()
    defer { try? FileManager.default.removeItem(at: folder) }
    let data = folder.appendingPathComponent("valid.jsonl").path
    let rows = (0..<4).map {
      #"{"prompt": "What is \#($0) plus \#($0 + 3)?", "completion": " \#(2 * $0 + 3)"}"#
    }
    try rows.joined(separator: "\n").write(toFile: data, atomically: true, encoding: .utf8)
    let common = [
      "eval", "--model", ModelCommandTests.defaultModel, "--data", data, "--adapter", paths[0], "--adapter",
      paths[1],
    ]
    let decode = { (text: String) in
      text.split(separator: "\n").compactMap {
        try? JSONDecoder().decode(EvalResult.self, from: Data($0.utf8))
      }
    }
    // fp32: merging is exact to float rounding. auto (bf16 where native): the merged copies
    // are fp32 while the unmerged pass multiplies in bf16, so they agree to bf16's rounding.
    for (precision, tolerance) in [("f32", 1e-4), ("auto", 1e-2)] {
      let unmerged = try CommandRunner.run(common + ["--json", "--base-precision", precision])
      let merged = try CommandRunner.run(common + ["--json", "--merged", "--base-precision", precision])
      #expect(unmerged.status == 0 && merged.status == 0, "\(unmerged.errors) \(merged.errors)")
      let (a, b) = (decode(unmerged.output), decode(merged.output))
      #expect(a.count == 2 && b.count == 2)
      for (x, y) in zip(a, b) {
        #expect(
          x.adapter == y.adapter && abs(x.loss - y.loss) <= tolerance * abs(x.loss),
          "\(precision): \(x.loss) against \(y.loss)")
        #expect(y.switchSeconds != nil && x.switchSeconds == nil)
      }
    }
    let table = try CommandRunner.run(common + ["--merged"])
    #expect(table.output.contains("switch ms") && table.output.contains(paths[1]))
  }
}
