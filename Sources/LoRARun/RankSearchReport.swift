import Foundation
import LoRATraining

/// The report of a `rank: auto` run: validation loss against rank, and each rung's decision.
enum RankSearchReport {
  static func html(_ d: RankSearchDocument) -> String {
    let points = d.rungs.map { (Double($0.rank), $0.validationLoss) }
    let chart = SVGChart.lines(
      [
        SVGChart.Series(
          points: points, color: SVGChart.palette[0], style: .lineAndDots, title: "validation loss")
      ],
      yLabel: "validation loss", xLabel: "rank")
    var rows = ""
    for rung in d.rungs {
      let improvement = rung.improvement.map { String(format: "%.2f%%", 100 * $0) } ?? "–"
      rows +=
        "<tr><td>\(rung.rank)</td><td>\(SVGChart.short(rung.alpha))</td><td>\(String(format: "%.4f", rung.validationLoss))</td>"
        + "<td>\(improvement)</td><td>\(rung.decision)</td><td>\(rung.updates)</td><td>\(rung.trainableParameters)</td>"
        + "<td>\(rung.rank == d.chosenRank ? "★ kept" : "")</td></tr>\n"
    }
    return """
      <!doctype html>
      <html lang="en"><head><meta charset="utf-8"><title>rank: auto</title><style>\(SVGChart.style)</style></head><body>
      <h1>rank: auto</h1>
      <p>Ladder \(d.ladder.map(String.init).joined(separator: ", ")); the next rank is tried while the validation loss \
      improves by more than \(String(format: "%.2f%%", 100 * d.tolerance)) over the previous rung. Kept: rank \(d.chosenRank) \
      (its adapter is in this folder; every rung's run is in rank-R/). Updates over all rungs: \(d.updatesTrained).</p>
      \(chart)
      <table><tr><th>rank</th><th>alpha</th><th>validation loss</th><th>improvement</th><th>decision</th>\
      <th>updates</th><th>trainable parameters</th><th></th></tr>
      \(rows)</table>
      </body></html>

      """
  }
}
