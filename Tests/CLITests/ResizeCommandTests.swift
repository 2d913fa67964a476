import Foundation
import Testing

/// `resize` through the built binary on the default model: shrink and grow with the
/// validation loss before and after, and bad requests that write nothing.
@Suite struct ResizeCommandTests {
  static let model = ModelCommandTests.defaultModel
  static var modelAvailable: Bool { FileManager.default.fileExists(atPath: model) }

  struct Result: Decodable {
    struct Change: Decodable {
      var from: Int
      var to: Int
      var energyKept: Double
    }
    var modules: [Change]
    var lossBefore: Double?
    var lossAfter: Double?
  }

  @Test(.enabled(if: modelAvailable, "the default model is not in the cache"))
  func shrinkAndGrowWithTheLossBeforeAndAfter() throws {
    let dir = try AnalyzeCommandTests.folder()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try MergeCommandTests.writeAdapter(to: dir + "/a")
    try #"{"prompt": "The capital of France is", "completion": " Paris."}"#.write(
      toFile: dir + "/valid.jsonl", atomically: true, encoding: .utf8)
    func resize(_ arguments: [String]) throws -> Result {
      let outcome = try CommandRunner.run(
        ["resize", "--model", Self.model, "--adapter", dir + "/a", "--data", dir + "/valid.jsonl", "--json"]
          + arguments)
      #expect(outcome.status == 0, "\(outcome.errors)")
      return try JSONDecoder().decode(Result.self, from: Data(outcome.output.utf8))
    }
    let shrunk = try resize(["--rank", "1", "--output", dir + "/r1"])
    #expect(shrunk.modules.count == 60 && shrunk.modules.allSatisfy { $0.from == 2 && $0.to == 1 })
    #expect(shrunk.modules.allSatisfy { $0.energyKept > 0.5 && $0.energyKept < 1 })
    #expect(FileManager.default.fileExists(atPath: dir + "/r1/adapter_model.safetensors"))
    let grown = try resize(["--rank", "4", "--output", dir + "/r4"])
    #expect(grown.modules.allSatisfy { $0.to == 4 && $0.energyKept == 1 })
    let (before, after) = (try #require(grown.lossBefore), try #require(grown.lossAfter))
    #expect(abs(before - after) <= 1e-6 * before, "growing changed the loss: \(before) → \(after)")
    // The grown folder is an ordinary PEFT adapter: eval reads it and gets the same loss.
    let eval = try CommandRunner.run([
      "eval", "--model", Self.model, "--adapter", dir + "/r4", "--data", dir + "/valid.jsonl", "--json",
      "--base-precision", "f32",
    ])
    #expect(eval.status == 0 && eval.output.contains("\"loss\""), "\(eval.errors)")

    // Training goes on from the grown adapter: its first validation loss is the grown one's.
    // (Scale kept: alpha 16 at r 2 becomes 32 at r 4.)
    let train = [
      "train", "--model", Self.model, "--data", dir + "/valid.jsonl", "--validation-data",
      dir + "/valid.jsonl",
      "--init-adapter", dir + "/r4", "--steps", "1", "--batch-size", "1", "--micro-batch", "1",
      "--base-precision",
      "f32", "--json",
    ]
    let wrong = try CommandRunner.run(train + ["--rank", "8", "--output", dir + "/wrong"])
    #expect(
      wrong.status != 0 && wrong.errors.contains("has rank 4 and alpha 32.0")
        && wrong.errors.contains("set rank and alpha to the adapter's"), "\(wrong.errors)")
    let resumed = try CommandRunner.run(train + ["--rank", "4", "--alpha", "32", "--output", dir + "/more"])
    #expect(resumed.status == 0, "\(resumed.errors)")
    let metrics = try String(contentsOfFile: dir + "/more/metrics.jsonl", encoding: .utf8)
    let first = try #require(
      metrics.split(separator: "\n").compactMap {
        try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
      }.first { $0["event"] as? String == "validation" && $0["step"] as? Int == 0 })
    let start = try #require(first["loss"] as? Double)
    #expect(
      abs(start - after) <= 1e-5 * after, "training from the grown adapter starts at \(start), not \(after)")
  }

  @Test(.enabled(if: modelAvailable, "the default model is not in the cache"))
  func badRequestsWriteNothing() throws {
    let dir = try AnalyzeCommandTests.folder()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try MergeCommandTests.writeAdapter(to: dir + "/a")
    let energy = try CommandRunner.run([
      "resize", "--model", Self.model, "--adapter", dir + "/a", "--energy", "1.5", "--output", dir + "/x",
    ])
    #expect(energy.status != 0 && energy.errors.contains("--energy must be in (0, 1], got 1.5"))
    let tooLarge = try CommandRunner.run([
      "resize", "--model", Self.model, "--adapter", dir + "/a", "--rank", "200", "--output", dir + "/x",
    ])
    #expect(
      tooLarge.status != 0
        && tooLarge.errors.contains("rank 200 is not possible for model.layers.0.self_attn.v_proj"),
      "\(tooLarge.errors)")
    #expect(!FileManager.default.fileExists(atPath: dir + "/x"))
    // An existing output is kept unless --overwrite.
    let again = try CommandRunner.run([
      "resize", "--model", Self.model, "--adapter", dir + "/a", "--rank", "1", "--output", dir + "/a",
    ])
    #expect(again.status != 0 && again.errors.contains("already holds an adapter"), "\(again.errors)")
  }
}
