import Foundation
import Testing

/// `combine` through the built binary on the default model: the exact sum scores as the
/// adapter it sums, SVD at the sum's rank too, and bad requests write nothing.
@Suite struct CombineCommandTests {
  static let model = ModelCommandTests.defaultModel
  static var modelAvailable: Bool { FileManager.default.fileExists(atPath: model) }

  struct Loss: Decodable { var loss: Double }

  @Test(.enabled(if: modelAvailable, "the default model is not in the cache"))
  func halvesOfOneAdapterSumToIt() throws {
    let dir = try AnalyzeCommandTests.folder()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try MergeCommandTests.writeAdapter(to: dir + "/a")
    try #"{"prompt": "The capital of France is", "completion": " Paris."}"#.write(
      toFile: dir + "/valid.jsonl", atomically: true, encoding: .utf8)
    for (method, extra) in [("cat", [String]()), ("svd", ["--rank", "2"])] {
      let outcome = try CommandRunner.run(
        [
          "combine", "--model", Self.model, "--adapter", dir + "/a", "--adapter", dir + "/a", "--weights",
          "0.25,0.75", "--method", method, "--output", dir + "/\(method)",
        ] + extra)
      #expect(outcome.status == 0 && outcome.output.contains("60 modules"), "\(outcome.errors)")
    }
    func loss(_ adapter: String) throws -> Double {
      let outcome = try CommandRunner.run([
        "eval", "--model", Self.model, "--adapter", adapter, "--data", dir + "/valid.jsonl", "--json",
        "--base-precision", "f32",
      ])
      #expect(outcome.status == 0, "\(outcome.errors)")
      return try JSONDecoder().decode(Loss.self, from: Data(outcome.output.utf8)).loss
    }
    let original = try loss(dir + "/a")
    for method in ["cat", "svd"] {
      #expect(abs(try loss(dir + "/\(method)") - original) <= 1e-5 * original, "\(method)")
    }
  }

  @Test(.enabled(if: modelAvailable, "the default model is not in the cache"))
  func badRequestsWriteNothing() throws {
    let dir = try AnalyzeCommandTests.folder()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try MergeCommandTests.writeAdapter(to: dir + "/a")
    let base = ["combine", "--model", Self.model, "--adapter", dir + "/a", "--adapter", dir + "/a"]
    let weights = try CommandRunner.run(base + ["--weights", "1,2,3", "--output", dir + "/x"])
    #expect(weights.status != 0 && weights.errors.contains("3 weights for 2 adapters"), "\(weights.errors)")
    let method = try CommandRunner.run(base + ["--method", "linear", "--output", dir + "/x"])
    #expect(method.status != 0 && method.errors.contains("--method 'linear' is not one of cat, svd"))
    let density = try CommandRunner.run(
      base + ["--method", "ties", "--density", "0", "--output", dir + "/x"])
    #expect(density.status != 0 && density.errors.contains("--density must be in (0, 1], got 0.0"))
    #expect(!FileManager.default.fileExists(atPath: dir + "/x"))
  }
}
