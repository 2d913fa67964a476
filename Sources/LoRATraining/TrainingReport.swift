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
      body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 980px; color: #222; padding: 0 1em; }
      h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
      table { border-collapse: collapse; } th, td { text-align: left; padding: .2em 1.2em .2em 0; vertical-align: top; }
      th { font-weight: 600; color: #444; } svg { background: #fafafa; border: 1px solid #ddd; }
      .legend span { margin-right: 1.5em; } .train { color: #1f6fd1; } .val { color: #d1501f; } .tps { color: #2a8a3a; }
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
    let points = steps.map { (Double($0.step), $0.loss) }
    let extra = validations.map { (Double($0.step), $0.loss) }
    return svg(series: [(points, "#1f6fd1", false), (extra, "#d1501f", true)], yLabel: "loss")
  }

  static func throughputChart(steps: [StepMetrics]) -> String {
    svg(series: [(steps.map { (Double($0.step), $0.tokensPerSecond) }, "#2a8a3a", false)], yLabel: "tokens/s")
  }

  /// A line (or dot) chart with axes and five ticks per axis.
  static func svg(series: [(points: [(Double, Double)], color: String, dots: Bool)], yLabel: String) -> String
  {
    let all = series.flatMap(\.points).filter { $0.1.isFinite }
    guard !all.isEmpty else { return "<p>(no data)</p>" }
    let (width, height, left, bottom, top, right) = (900.0, 330.0, 60.0, 40.0, 30.0, 20.0)
    let xs = all.map(\.0)
    let ys = all.map(\.1)
    let (x0, x1) = (xs.min()!, max(xs.max()!, xs.min()! + 1))
    var (y0, y1) = (ys.min()!, ys.max()!)
    if y1 - y0 < 1e-9 { (y0, y1) = (y0 - 1, y1 + 1) }
    let pad = (y1 - y0) * 0.05
    (y0, y1) = (ys.min()! >= 0 ? max(0, y0 - pad) : y0 - pad, y1 + pad)
    func px(_ x: Double) -> Double { left + (x - x0) / (x1 - x0) * (width - left - right) }
    func py(_ y: Double) -> Double { height - bottom - (y - y0) / (y1 - y0) * (height - bottom - top) }
    var out =
      "<svg viewBox=\"0 0 \(Int(width)) \(Int(height))\" width=\"100%\" role=\"img\" aria-label=\"\(yLabel)\">"
    for i in 0...4 {
      let y = y0 + (y1 - y0) * Double(i) / 4
      let x = x0 + (x1 - x0) * Double(i) / 4
      out +=
        "<line x1=\"\(left)\" x2=\"\(width - right)\" y1=\"\(py(y))\" y2=\"\(py(y))\" stroke=\"#e4e4e4\"/>"
      out +=
        "<text x=\"\(left - 6)\" y=\"\(py(y) + 4)\" font-size=\"11\" text-anchor=\"end\">\(short(y))</text>"
      out +=
        "<text x=\"\(px(x))\" y=\"\(height - bottom + 16)\" font-size=\"11\" text-anchor=\"middle\">\(Int(x.rounded()))</text>"
    }
    out +=
      "<text x=\"\((width + left) / 2)\" y=\"\(height - 6)\" font-size=\"12\" text-anchor=\"middle\">update</text>"
    out += "<text x=\"\(left)\" y=\"\(top - 12)\" font-size=\"12\">\(yLabel)</text>"
    for s in series where !s.points.isEmpty {
      let valid = s.points.filter { $0.1.isFinite }
      if s.dots {
        for (x, y) in valid {
          out += "<circle cx=\"\(px(x))\" cy=\"\(py(y))\" r=\"3.5\" fill=\"\(s.color)\"/>"
        }
      } else {
        let path = valid.map { "\(px($0.0)),\(py($0.1))" }.joined(separator: " ")
        out += "<polyline fill=\"none\" stroke=\"\(s.color)\" stroke-width=\"1.6\" points=\"\(path)\"/>"
      }
    }
    return out + "</svg>"
  }

  static func short(_ v: Double) -> String {
    abs(v) >= 100 ? String(Int(v.rounded())) : String(format: "%.3g", v)
  }

  static func escape(_ s: String) -> String {
    s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
      .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
  }
}
