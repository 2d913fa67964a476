import Foundation
import LoRAServe
import Testing

/// `route sign` and `route test` on the default model: two tasks with distinct prompts are
/// routed to their own adapters; missing signatures and bad arguments are refused.
@Suite(
  .enabled(
    if: FileManager.default.fileExists(atPath: ModelCommandTests.defaultModel),
    "the default model is not in the cache"
  ))
struct RouteCommandTests {
  static func write(_ rows: [String], _ path: String) throws {
    try rows.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
  }

  @Test func signsAdaptersAndRoutesHeldOutPromptsToTheirTask() throws {
    let (folder, paths) = try SeveralAdaptersTests.adapters()
    defer { try? FileManager.default.removeItem(at: folder) }
    let words = [
      "house", "tree", "water", "friend", "night", "bread", "window", "river", "stone", "light", "mountain",
      "garden",
    ]
    let arithmetic = (0..<24).map {
      #"{"prompt": "What is \#($0 * 7 % 50) plus \#($0 * 11 % 40)?", "completion": " \#($0 * 7 % 50 + $0 * 11 % 40)"}"#
    }
    let dictionary = (0..<24).map {
      #"{"prompt": "English: \#(words[$0 % words.count])\nGerman:", "completion": " x"}"#
    }
    let d = folder.path
    try Self.write(Array(arithmetic.prefix(16)), d + "/arith-train.jsonl")
    try Self.write(Array(arithmetic.suffix(8)), d + "/arith-valid.jsonl")
    try Self.write(Array(dictionary.prefix(16)), d + "/dict-train.jsonl")
    try Self.write(Array(dictionary.suffix(8)), d + "/dict-valid.jsonl")

    let model = ModelCommandTests.defaultModel
    // Without signatures, route test refuses and names the adapter.
    let unsigned = try CommandRunner.run([
      "route", "test", "--model", model, "--adapter", "arith=\(paths[0])", "--data",
      "arith=\(d)/arith-valid.jsonl",
    ])
    #expect(
      unsigned.status != 0 && unsigned.errors.contains("route sign") && unsigned.errors.contains(paths[0]))

    for (path, data) in zip(paths, ["arith-train", "dict-train"]) {
      let signed = try CommandRunner.run([
        "route", "sign", "--model", model, "--adapter", path, "--data", "\(d)/\(data).jsonl",
      ])
      #expect(signed.status == 0, "\(signed.errors)")
      #expect(FileManager.default.fileExists(atPath: path + "/route-signature.json"))
    }
    let routed = try CommandRunner.run([
      "route", "test", "--model", model, "--adapter", "arith=\(paths[0])", "--adapter", "dict=\(paths[1])",
      "--data", "arith=\(d)/arith-valid.jsonl", "--data", "dict=\(d)/dict-valid.jsonl", "--json",
    ])
    #expect(routed.status == 0, "\(routed.errors)")
    struct Rows: Decodable {
      struct Row: Decodable {
        var task: String
        var prompts: Int
        var correct: Int
      }
      var tasks: [Row]
    }
    let rows = try JSONDecoder().decode(Rows.self, from: Data(routed.output.utf8)).tasks
    #expect(rows.map(\.task) == ["arith", "dict"] && rows.allSatisfy { $0.prompts == 8 && $0.correct == 8 })

    // Above every similarity: everything goes to the base.
    let strict = try CommandRunner.run([
      "route", "test", "--model", model, "--adapter", "arith=\(paths[0])", "--data",
      "arith=\(d)/arith-valid.jsonl",
      "--threshold", "1",
    ])
    #expect(strict.output.contains("0/8") && strict.output.contains("base 8"))
  }

  @Test func refusesWhatIsNotAnAdapter() throws {
    let outcome = try CommandRunner.run([
      "route", "sign", "--model", ModelCommandTests.defaultModel, "--adapter", "/nonexistent", "--data",
      "x.jsonl",
    ])
    #expect(outcome.status != 0 && outcome.errors.contains("/nonexistent is not an adapter"))
  }
}
