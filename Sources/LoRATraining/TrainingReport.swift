import Foundation

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

  static func escape(_ s: String) -> String { SVGChart.escape(s) }
}
