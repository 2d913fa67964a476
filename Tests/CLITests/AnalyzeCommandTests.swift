import Foundation
import Testing

/// `analyze` through the built binary on the default model: one adapter's spectrum, two
/// adapters compared, the HTML report, and bad input.
@Suite struct AnalyzeCommandTests {
  static let model = ModelCommandTests.defaultModel
  static var modelAvailable: Bool { FileManager.default.fileExists(atPath: model) }

  static func folder() throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent(
      "sld-analyze-\(UUID().uuidString)"
    ).path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
  }

  struct Analysis: Decodable {
    struct Module: Decodable {
      var name: String
      var rank: Int
      var singularValues: [Double]
      var energy: [Double]
      var amplification: Amplification?
    }
    struct Amplification: Decodable { var factor: Double? }
    struct Comparison: Decodable {
      var name: String
      var similarity: Similarity
      var randomBaseline: Similarity
    }
    struct Similarity: Decodable { var phi: [[Double]] }
    var modules: [[Module]]
    var comparisons: [Comparison]
    var unmatched: [String]
  }

  @Test(.enabled(if: modelAvailable, "the default model is not in the cache"))
  func oneAndTwoAdaptersWithTheReport() throws {
    let dir = try Self.folder()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try MergeCommandTests.writeAdapter(to: dir + "/a")
    let one = try CommandRunner.run(["analyze", "--model", Self.model, "--adapter", dir + "/a", "--json"])
    #expect(one.status == 0, "\(one.errors)")
    let single = try JSONDecoder().decode(Analysis.self, from: Data(one.output.utf8))
    #expect(single.modules.count == 1 && single.modules[0].count == 60 && single.comparisons.isEmpty)
    #expect(
      single.modules[0].allSatisfy { $0.rank == 2 && $0.energy.last == 1 && $0.amplification?.factor != nil })

    // The same adapter twice: every module's top directions coincide, far above random.
    let report = dir + "/analysis.html"
    let two = try CommandRunner.run([
      "analyze", "--model", Self.model, "--adapter", dir + "/a", "--adapter", dir + "/a", "--no-base",
      "--report", report,
    ])
    #expect(two.status == 0, "\(two.errors)")
    #expect(two.output.contains("subspace similarity over 60 modules: φ(1,1) median 1"), "\(two.output)")
    let html = try String(contentsOfFile: report, encoding: .utf8)
    #expect(html.contains("<svg") && html.contains("model.layers.29.self_attn.v_proj"))
    // An existing report is kept unless --overwrite.
    let again = try CommandRunner.run([
      "analyze", "--model", Self.model, "--adapter", dir + "/a", "--no-base", "--report", report,
    ])
    #expect(again.status != 0 && again.errors.contains("the file exists"), "\(again.errors)")
    #expect(try String(contentsOfFile: report, encoding: .utf8) == html)
  }

  @Test func oneOrTwoAdaptersOnly() throws {
    let outcome = try CommandRunner.run(["analyze", "--model", Self.model])
    #expect(outcome.status != 0 && outcome.errors.contains("give one or two --adapter options (got 0)"))
  }
}
