import Foundation
import Testing

/// `bench` through the binary on the default model (tiny batches): one rank, and thread-ranks.
@Suite(.enabled(if: TrainCommandTests.modelAvailable, "the default model is not in the cache"))
struct BenchCommandTests {
  static let model = TrainCommandTests.model

  struct Result: Decodable {
    let ranks: Int
    let threadRanks: Bool
    let tokensPerSecond: Double
    let sgemmPeakGFLOPs: Double
    let rankProportionalMB: [Double]
  }

  @Test(arguments: [nil, 2] as [Int?])
  func benchReportsItsRanks(localRanks: Int?) throws {
    var arguments = [
      "bench", "--model", Self.model, "--batch", "2", "--seq", "8", "--steps", "1", "--warmup", "0",
      "--threads",
      "1", "--json",
    ]
    if let localRanks { arguments += ["--local-ranks", String(localRanks)] }
    let outcome = try CommandRunner.run(arguments)
    #expect(outcome.status == 0, "\(outcome.errors)")
    let result = try JSONDecoder().decode(Result.self, from: Data(outcome.output.utf8))
    #expect(result.ranks == (localRanks ?? 1))
    #expect(result.threadRanks == (localRanks != nil))
    #expect(result.tokensPerSecond > 0 && result.sgemmPeakGFLOPs > 0)
    // Thread-ranks are one process: its memory once.
    #expect(result.rankProportionalMB.count == 1)
  }

  @Test func theRanksMustDivideTheBatch() throws {
    let outcome = try CommandRunner.run([
      "bench", "--model", Self.model, "--batch", "3", "--seq", "8", "--steps", "1", "--local-ranks", "2",
    ])
    #expect(outcome.status != 0)
    #expect(outcome.errors.contains("--batch 3 must be divisible by the 2 ranks"), "\(outcome.errors)")
  }
}
