import LoRAKernels
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

  /// Steps that carry rank 0's phases add a chart: one line per phase that took time.
  @Test func phasesGetAChartOfTheirOwn() {
    let steps = (1...3).map { n in
      var m = step(n, loss: Double(4 - n))
      m.phases = PhaseTimes(seconds: [0.3, 0.1, 0.01, 0.02, 0.05, 0.04, 0.003, 0.001 * Double(n), 0])
      return m
    }
    let html = TrainingReport.html(
      title: "t", steps: steps, validations: [], summary: [], configuration: [])
    #expect(html.contains("Time per update by phase (rank 0)"))
    // Loss, throughput and the eight phases with time (the all-reduce took none).
    #expect(html.components(separatedBy: "<polyline").count == 11)
    #expect(html.contains("frozen products") && html.contains("waiting") && !html.contains("all-reduce"))
    let plain = TrainingReport.html(
      title: "t", steps: [step(1, loss: 1)], validations: [], summary: [], configuration: [])
    #expect(!plain.contains("by phase"))
  }

  @Test func emptyRunsSaySo() {
    let html = TrainingReport.html(title: "t", steps: [], validations: [], summary: [], configuration: [])
    #expect(html.contains("(no data)"))
  }

  @Test func yTicksFallOnRoundValues() {
    #expect(SVGChart.Frame.roundTicks(0.04...4.4) == [1, 2, 3, 4])
    #expect(SVGChart.Frame.roundTicks(0.04...8.2) == [2, 4, 6, 8])
    let tenths = SVGChart.Frame.roundTicks(3.9...4.9)
    #expect(tenths.count == 5 && zip(tenths, [4, 4.2, 4.4, 4.6, 4.8]).allSatisfy { abs($0 - $1) < 1e-9 })
    #expect(SVGChart.Frame.roundTicks(0...1) == [0, 0.5, 1])
  }

  @Test func xTicksFallOnRoundWholeValues() {
    func ticks(_ x0: Double, _ x1: Double) -> [Double] {
      SVGChart.Frame(x0: x0, x1: x1, y0: 0, y1: 1).xTicks()
    }
    #expect(ticks(0, 6) == [0, 2, 4, 6])
    #expect(ticks(0, 40) == [0, 10, 20, 30, 40])
    #expect(ticks(0, 1) == [0, 1])
    #expect(ticks(1, 3) == [1, 2, 3])
    #expect(ticks(0, 217) == [0, 100, 200])
    let minutes = SVGChart.Frame(x0: 0, x1: 217, y0: 0, y1: 1).xTicks(steps: [1, 10, 60, 600])
    #expect(minutes == [0, 60, 120, 180])
  }

  @Test func aTitledSeriesCarriesItsTooltip() {
    let frame = SVGChart.Frame(x0: 0, x1: 2, y0: 0, y1: 1)
    let drawn = frame.draw(
      .init(points: [(0, 1), (2, 0.5)], color: "#000", style: .lineAndDots, title: "a<b"))
    #expect(drawn.components(separatedBy: "<title>a&lt;b</title>").count - 1 == 3)  // the line and two dots
    #expect(drawn.hasPrefix("<polyline ") && drawn.contains("</circle>"))
  }
}
