import Testing

@testable import LoRATraining

@Suite struct TrainingReportTests {
  func step(_ n: Int, loss: Double) -> StepMetrics {
    StepMetrics(
      step: n, totalSteps: 3, loss: loss, learningRate: 1e-3, gradientNorm: 1, tokens: 100, trainedTokens: 50,
      seconds: 0.5, tokensPerSecond: 200, epoch: 0.1, etaSeconds: 1)
  }

  @Test func drawsCurvesAndEscapesText() {
    let html = TrainingReport.html(
      title: "run <1>", steps: [step(1, loss: 3), step(2, loss: 2), step(3, loss: 1)],
      validations: [(0, 3.5), (3, 1.2)], summary: [("data", "a&b.jsonl")], configuration: [("lora.r", "8")])
    #expect(html.contains("<title>run &lt;1&gt;</title>"))
    #expect(html.contains("a&amp;b.jsonl"))
    #expect(html.components(separatedBy: "<polyline").count == 3)  // loss and throughput lines
    #expect(html.components(separatedBy: "<circle").count == 3)  // two validation points
    #expect(!html.contains("nan"))
  }

  @Test func emptyRunsSaySo() {
    let html = TrainingReport.html(title: "t", steps: [], validations: [], summary: [], configuration: [])
    #expect(html.contains("(no data)"))
  }
}
