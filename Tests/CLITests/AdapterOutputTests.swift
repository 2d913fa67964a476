import Foundation
import LoRARun
import LoRATraining
import Testing

@testable import swift_lora_dist

/// An adapter's metrics file: lines per update and validation (named by the adapter in a
/// job), cut back to the checkpoint on resume, kept as is for a finished adapter, and
/// written by rank 0 only.
struct AdapterOutputTests {
  func metrics(_ step: Int) -> StepMetrics {
    StepMetrics(
      step: step, totalSteps: 3, loss: 1.5, learningRate: 1e-3, gradientNorm: 0.5, tokens: 10,
      trainedTokens: 4,
      seconds: 0.25, tokensPerSecond: 40, epoch: 0.5, etaSeconds: 0)
  }

  func lines(_ folder: URL) throws -> [Substring] {
    try String(contentsOf: folder.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(
      separator: "\n")
  }

  @Test func aResumedOutputKeepsTheLinesUpToItsCheckpoint() throws {
    let folder = try TrainCommandTests.Folder()
    let url = URL(fileURLWithPath: folder.path).appendingPathComponent("out")
    do {
      let out = try AdapterOutput(folder: url, totalSteps: 3, adapterName: "a", leader: true, start: .fresh)
      for step in 1...3 {
        out.step(metrics(step))
        out.validation(step: step, loss: 2, tokens: 8)
      }
    }
    #expect(try lines(url).count == 6)
    #expect(try lines(url).allSatisfy { $0.contains("\"adapter\":\"a\"") })

    let finished = try AdapterOutput(folder: url, totalSteps: 3, leader: true, start: .finished)
    #expect(finished.steps.map(\.step) == [1, 2, 3] && finished.validations.map(\.step) == [1, 2, 3])
    #expect(try lines(url).count == 6)

    let resumed = try AdapterOutput(folder: url, totalSteps: 3, leader: true, start: .resumed(step: 2))
    #expect(resumed.steps.map(\.step) == [1, 2] && resumed.validations.map(\.step) == [1, 2])
    #expect(resumed.steps.allSatisfy { $0.totalSteps == 3 && $0.tokens == 10 })
    resumed.step(metrics(3))
    let after = try lines(url)
    #expect(after.count == 5 && after.last!.contains("\"step\":3") && !after.last!.contains("adapter"))
  }

  @Test func otherRanksWriteNothing() throws {
    let folder = try TrainCommandTests.Folder()
    let url = URL(fileURLWithPath: folder.path).appendingPathComponent("out")
    let out = try AdapterOutput(folder: url, totalSteps: 3, leader: false, start: .fresh)
    let line = out.step(metrics(1))
    #expect(line["event"] as? String == "step" && out.steps.count == 1)
    #expect(!FileManager.default.fileExists(atPath: url.path))
  }
}
