import Foundation
import LoRACheckpoint
import LoRATraining

/// The HTML page of `analyze`: one self-contained file with inline SVG (no script), built
/// from an `AdapterAnalysis`.
public enum AnalysisReport {
  public static func html(_ analysis: AdapterAnalysis) -> String {
    var body = "<h1>Adapter analysis</h1>\n<ul>"
    for (index, name) in analysis.adapters.enumerated() {
      body += "<li>adapter \(index + 1): \(SVGChart.escape(name))</li>"
    }
    body += "</ul>\n"
    for (index, modules) in analysis.modules.enumerated() {
      body += section(adapter: index + 1, modules)
    }
    if !analysis.comparisons.isEmpty { body += comparisons(analysis) }
    return """
      <!doctype html>
      <html lang="en"><head><meta charset="utf-8"><title>Adapter analysis</title>
      <style>\(SVGChart.style) td.n { text-align: right; } .maps { display: flex; gap: 1.5em; flex-wrap: wrap; }</style>
      </head><body>
      \(body)
      </body></html>

      """
  }

  /// One adapter: energy against k and effective rank against layer, per target, then the
  /// table of every module.
  static func section(adapter: Int, _ modules: [AdapterAnalysis.Module]) -> String {
    let targets = Array(Set(modules.map(\.target))).sorted()
    var energy: [SVGChart.Series] = []
    var effective: [SVGChart.Series] = []
    for (i, target) in targets.enumerated() {
      let rows = modules.filter { $0.target == target }
      let rank = rows.map(\.rank).max() ?? 1
      var mean: [(Double, Double)] = []
      for k in 1...rank {
        let total = rows.reduce(0.0) { $0 + $1.energy[min(k, $1.energy.count) - 1] }
        mean.append((Double(k), total / Double(rows.count)))
      }
      let color = SVGChart.palette[i % SVGChart.palette.count]
      energy.append(SVGChart.Series(points: mean, color: color, style: .lineAndDots, title: target))
      effective.append(
        SVGChart.Series(
          points: rows.map { (Double($0.layer), $0.effectiveRank) }, color: color, style: .lineAndDots,
          title: target))
    }
    let legend = targets.enumerated().map { i, target in
      "<span style=\"color:\(SVGChart.palette[i % SVGChart.palette.count])\">■ \(target)</span>"
    }.joined()
    var out = "<h2>Adapter \(adapter): spectrum of ΔW = s·B·A</h2>\n<p class=\"legend\">\(legend)</p>\n"
    out += "<p>Share of ‖ΔW‖²_F in the top k singular values (mean over layers)</p>\n"
    out += SVGChart.lines(energy, yLabel: "energy", xLabel: "k") + "\n"
    out += "<p>Effective rank (exp of the entropy of σ/Σσ) per layer</p>\n"
    out += SVGChart.lines(effective, yLabel: "effective rank", xLabel: "layer") + "\n"
    out += "<details><summary>Every module</summary><table><tr><th>module</th><th>r</th><th>σ₁</th>"
    out += "<th>‖ΔW‖_F</th><th>stable rank</th><th>effective rank</th><th>k for 90%</th><th>k for 99%</th>"
    out += "<th>amplification</th><th>ΔW in W's top-r</th></tr>\n"
    for m in modules {
      let amp = m.amplification
      out += "<tr><td>\(SVGChart.escape(m.name))</td><td class=n>\(m.rank)</td>"
      out += "<td class=n>\(SVGChart.short(m.singularValues.first ?? 0))</td>"
      out +=
        "<td class=n>\(SVGChart.short(m.frobeniusNorm))</td><td class=n>\(SVGChart.short(m.stableRank))</td>"
      out += "<td class=n>\(SVGChart.short(m.effectiveRank))</td><td class=n>\(m.rankFor90)</td>"
      out += "<td class=n>\(m.rankFor99)</td><td class=n>\(amp?.factor.map(SVGChart.short) ?? "–")</td>"
      out += "<td class=n>\(amp.map { SVGChart.short($0.deltaInBaseTopDirections) } ?? "–")</td></tr>\n"
    }
    return out + "</table></details>\n"
  }

  /// φ heat maps for the first, middle and last layer of each target, beside the random
  /// baseline, then a table of every module.
  static func comparisons(_ analysis: AdapterAnalysis) -> String {
    var out = "<h2>Subspace similarity of the two adapters' top directions</h2>\n"
    out += "<p>φ(i, j) = ‖V₁[:, :i]ᵀ V₂[:, :j]‖²_F / min(i, j) over ΔW's right singular vectors "
    out += "(Hu et al. 2021, section 7.2): 1 when one span lies in the other, 0 when orthogonal; "
    out += "the random baseline is the same measure between Gaussian subspaces of the same sizes.</p>\n"
    let layers = Array(Set(analysis.comparisons.map { AdapterAnalysis.layer(of: $0.name) })).sorted()
    let shown = Set([layers.first, layers[layers.count / 2], layers.last].compactMap { $0 })
    for comparison in analysis.comparisons where shown.contains(AdapterAnalysis.layer(of: comparison.name)) {
      out += "<h3>\(SVGChart.escape(comparison.name))</h3>\n<div class=maps>"
      out += heatMap(comparison.similarity.phi, caption: "adapters 1 and 2")
      out += heatMap(comparison.randomBaseline.phi, caption: "random baseline") + "</div>\n"
    }
    out += "<table><tr><th>module</th><th>φ(1, 1)</th><th>mean φ, i, j ≤ 8</th><th>random mean</th></tr>\n"
    for comparison in analysis.comparisons {
      out += "<tr><td>\(SVGChart.escape(comparison.name))</td>"
      out += "<td class=n>\(SVGChart.short(comparison.similarity.phi[0][0]))</td>"
      out += "<td class=n>\(SVGChart.short(meanPhi(comparison.similarity)))</td>"
      out += "<td class=n>\(SVGChart.short(meanPhi(comparison.randomBaseline)))</td></tr>\n"
    }
    if !analysis.unmatched.isEmpty {
      out +=
        "</table>\n<p>Not compared: \(analysis.unmatched.map(SVGChart.escape).joined(separator: ", "))</p>\n"
      return out
    }
    return out + "</table>\n"
  }

  /// The mean of φ(i, j) over i, j ≤ 8.
  public static func meanPhi(_ s: SubspaceSimilarity) -> Double {
    let cells = s.phi.prefix(8).flatMap { $0.prefix(8) }
    return cells.reduce(0, +) / Double(max(cells.count, 1))
  }

  /// grid[i][j] in [0, 1] as cells from white (0) to dark blue (1), i down, j across.
  static func heatMap(_ grid: [[Double]], caption: String) -> String {
    let rows = grid.count
    let columns = grid.first?.count ?? 0
    let cell = max(4.0, min(24.0, 320.0 / Double(max(rows, columns, 1))))
    let (left, top) = (28.0, 22.0)
    let width = left + cell * Double(columns) + 8
    let height = top + cell * Double(rows) + 8
    var out =
      "<figure><svg width=\"\(Int(width))\" height=\"\(Int(height))\" role=\"img\" aria-label=\"φ, \(caption)\">"
    out +=
      "<text x=\"\(left)\" y=\"14\" font-size=\"11\">j →</text><text x=\"2\" y=\"\(top + 10)\" font-size=\"11\">i ↓</text>"
    for (i, row) in grid.enumerated() {
      for (j, value) in row.enumerated() {
        let shade = Int((1 - max(0, min(1, value))) * 235) + 20
        let fill = "rgb(\(shade),\(shade),\(min(255, shade + 40)))"
        out += SVGChart.element(
          "rect",
          "x=\"\(left + Double(j) * cell)\" y=\"\(top + Double(i) * cell)\" width=\"\(cell)\" height=\"\(cell)\" fill=\"\(fill)\"",
          title: "φ(\(i + 1), \(j + 1)) = \(SVGChart.short(value))")
      }
    }
    return out
      + "</svg><figcaption>\(SVGChart.escape(caption)) (φ from 0, white, to 1, dark)</figcaption></figure>"
  }
}
