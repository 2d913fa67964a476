import Foundation
import LoRAKernels

/// A run's HTML report: loss and validation curves as inline SVG, throughput, dataset and
/// configuration tables. One self-contained file, readable offline.
public enum TrainingReport {
  public static func html(
    title: String, steps: [StepMetrics], validations: [(step: Int, loss: Double)],
    summary: [(String, String)],
    configuration: [(String, String)]
  ) -> String {
    let chart = lossChart(steps: steps, validations: validations)
    let throughput = throughputChart(steps: steps)
    let phases = steps.contains { $0.phases != nil } ? phaseSection(steps: steps) : ""
    func table(_ rows: [(String, String)]) -> String {
      "<table>" + rows.map { "<tr><th>\(escape($0.0))</th><td>\(escape($0.1))</td></tr>" }.joined()
        + "</table>"
    }
    return """
      <!doctype html>
      <html lang="en"><head><meta charset="utf-8"><title>\(escape(title))</title>
      <style>
      \(SVGChart.style)
      .train { color: #1f6fd1; } .val { color: #d1501f; } .tps { color: #2a8a3a; }
      </style></head><body>
      <h1>\(escape(title))</h1>
      \(table(summary))
      <h2>Loss</h2>
      <p class="legend"><span class="train">■ training loss per update</span><span class="val">● validation loss</span></p>
      \(chart)
      <h2>Throughput</h2>
      <p class="legend"><span class="tps">■ tokens per second per update</span></p>
      \(throughput)
      \(phases)
      <h2>Configuration</h2>
      \(table(configuration))
      </body></html>
      """
  }

  static func lossChart(steps: [StepMetrics], validations: [(step: Int, loss: Double)]) -> String {
    SVGChart.lines(
      [
        .init(points: steps.map { (Double($0.step), $0.loss) }, color: "#1f6fd1"),
        .init(points: validations.map { (Double($0.step), $0.loss) }, color: "#d1501f", style: .dots),
      ], yLabel: "loss")
  }

  static func throughputChart(steps: [StepMetrics]) -> String {
    SVGChart.lines(
      [.init(points: steps.map { (Double($0.step), $0.tokensPerSecond) }, color: "#2a8a3a")],
      yLabel: "tokens/s")
  }

  /// Rank 0's seconds per update in each phase that took any time (`StepMetrics.phases`).
  static func phaseSection(steps: [StepMetrics]) -> String {
    let colors = [
      "#1f6fd1", "#7b3fc4", "#d1501f", "#2a8a3a", "#c49a1f", "#6b6b6b", "#1fb5c4", "#d11f6f", "#000000",
    ]
    let shown = Phase.allCases.filter { phase in steps.contains { ($0.phases?[phase] ?? 0) > 0 } }
    let series = shown.map { phase in
      SVGChart.Series(
        points: steps.compactMap { m in m.phases.map { (Double(m.step), $0[phase]) } },
        color: colors[phase.rawValue % colors.count], title: phase.title)
    }
    let legend = shown.map {
      "<span style=\"color: \(colors[$0.rawValue % colors.count])\">■ \(escape($0.title))</span>"
    }
    return """
      <h2>Time per update by phase (rank 0)</h2>
      <p class="legend">\(legend.joined())</p>
      \(SVGChart.lines(series, yLabel: "seconds"))
      """
  }

  static func escape(_ s: String) -> String { SVGChart.escape(s) }
}
