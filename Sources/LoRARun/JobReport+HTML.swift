import Foundation
import LoRATraining

/// The dashboard's page: one self-contained HTML file (inline SVG and CSS, no script, no
/// external resource) with the adapters' table, their validation curves, the sweep grids
/// and the timeline; each adapter's name links to its own `report.html`.
extension JobReport {
  /// The whole page.
  public func html() -> String {
    let grids = sweeps
    return """
      <!doctype html>
      <html lang="en"><head><meta charset="utf-8"><title>Job \(escape(job))</title>
      <style>
      \(SVGChart.style)
      body { max-width: 1200px; }
      .adapters td, .adapters th { border-bottom: 1px solid #eee; } .num { text-align: right; white-space: nowrap; }
      .adapters td:first-child { white-space: nowrap; }
      .halted { color: #a15c00; } .skipped, .unfinished { color: #777; }
      .sweep td { border: 1px solid #ddd; padding: .4em .8em; text-align: center; min-width: 7em; }
      .sweep td.winner { background: #e6f4e1; font-weight: 600; } .sweep td.halted { background: #fbf1e3; }
      .sweep small { display: block; font-weight: normal; }
      .legend i { display: inline-block; width: .9em; height: .9em; margin-right: .3em; vertical-align: -.1em; }
      </style></head><body>
      <h1>Job \(escape(job))</h1>
      <p>\(escape(overview))</p>
      <h2>Adapters</h2>
      \(adaptersTable())
      <h2>Validation loss</h2>
      \(curvesChart())
      \(grids.isEmpty ? "" : "<h2>Sweeps</h2>\n" + grids.map(sweepTable).joined(separator: "\n"))
      <h2>Timeline</h2>
      <p>What each rank group trained, from start to end (wall time since the first unit started).</p>
      \(timeline())
      </body></html>
      """
  }

  /// "6 adapters: 3 finished, 2 stopped by successive halving, 1 skipped; …".
  var overview: String {
    let statuses = adapters.map(status)
    var counts: [String] = []
    for (label, matches) in [
      ("finished", { $0 == .finished }),
      ("stopped by successive halving", { if case .halted = $0 { true } else { false } }),
      ("skipped (finished earlier)", { $0 == .skipped }), ("not finished", { $0 == .unfinished }),
    ] as [(String, (Status) -> Bool)] {
      let n = statuses.filter(matches).count
      if n > 0 { counts.append("\(n) \(label)") }
    }
    let groups = Set(units.map(\.placement.group)).count
    return "\(adapters.count) adapter\(adapters.count == 1 ? "" : "s"): " + counts.joined(separator: ", ")
      + "; \(groups) rank group\(groups == 1 ? "" : "s") in the timeline."
  }

  /// Every adapter's row: name (linked to its report), status, losses, tokens, time, group.
  func adaptersTable() -> String {
    let head = [
      "adapter", "status", "base val. loss", "final val. loss", "improvement", "trained tokens", "wall time",
      "rank group",
    ].map { "<th>\($0)</th>" }.joined()
    let rows = adapters.map { adapter -> String in
      let state = status(adapter)
      let improvement = adapter.baseLoss.flatMap { base in
        adapter.finalLoss.map { "\(format(base - $0, 4)) (\(format(100 * (base - $0) / base, 1))%)" }
      }
      let cells = [
        link(adapter), escape(text(state)), adapter.baseLoss.map { format($0, 4) } ?? "-",
        adapter.finalLoss.map { format($0, 4) } ?? "-", improvement ?? "-", grouped(adapter.trainedTokens),
        duration(adapter.wallSeconds), escape(adapter.units.last.map(describe) ?? "-"),
      ]
      let tds = cells.enumerated().map { i, cell in
        (2...6).contains(i) ? "<td class=\"num\">\(cell)</td>" : "<td>\(cell)</td>"
      }.joined()
      return "<tr class=\"adapter \(kind(state))\" data-adapter=\"\(escape(adapter.name))\">\(tds)</tr>"
    }
    return "<table class=\"adapters\" id=\"adapters\"><thead><tr>\(head)</tr></thead><tbody>\n"
      + rows.joined(separator: "\n") + "\n</tbody></table>"
  }

  /// Every adapter's validation curve (loss against update), a coloured line each, with a
  /// legend.
  func curvesChart() -> String {
    let drawn = adapters.enumerated().filter { $0.element.curve.contains { $0.loss.isFinite } }
    let series = drawn.map { i, adapter in
      SVGChart.Series(
        points: adapter.curve.map { (Double($0.step), $0.loss) },
        color: SVGChart.palette[i % SVGChart.palette.count],
        style: .lineAndDots, title: adapter.name)
    }
    let legend = zip(drawn, series).map { item, s in
      "<span><i style=\"background: \(s.color)\"></i>\(escape(item.element.name))</span>"
    }.joined()
    guard !series.isEmpty else { return "<p>(no validation losses recorded)</p>" }
    return "<p class=\"legend\">\(legend)</p>\n<figure id=\"curves\" class=\"chart\">"
      + SVGChart.lines(series, yLabel: "validation loss") + "</figure>"
  }

  /// A sweep's grid: a cell per member with its last validation loss; the winner marked ★,
  /// members halted marked with their rung.
  func sweepTable(_ grid: SweepGrid) -> String {
    let across = grid.keys.dropFirst().joined(separator: ", ")
    var out = "<h3>\(escape(grid.name))</h3>\n<table class=\"sweep\" data-sweep=\"\(escape(grid.name))\">"
    out += "<tr><th>\(escape(grid.keys.first ?? "")) \\ \(escape(across.isEmpty ? "value" : across))</th>"
    out += grid.columns.map { "<th>\(escape($0.isEmpty ? "-" : $0.joined(separator: ", ")))</th>" }.joined()
    out += "</tr>"
    for (r, row) in grid.rows.enumerated() {
      out += "<tr><th>\(escape(row))</th>"
      for member in grid.cells[r] {
        guard let member else {
          out += "<td></td>"
          continue
        }
        let winner = member.name == grid.winner
        let classes = ["cell"] + (winner ? ["winner"] : []) + (member.haltedAt != nil ? ["halted"] : [])
        let note =
          winner
          ? "<small>★ best</small>" : member.haltedAt.map { "<small>stopped at step \($0)</small>" } ?? ""
        out +=
          "<td class=\"\(classes.joined(separator: " "))\" data-adapter=\"\(escape(member.name))\">"
          + "\(member.finalLoss.map { format($0, 4) } ?? "-")\(note)<small>\(link(member))</small></td>"
      }
      out += "</tr>"
    }
    return out + "</table>"
  }

  /// The adapter's name, linked to its own report when it has one.
  func link(_ adapter: Adapter) -> String {
    guard let href = reportLink(adapter) else { return escape(adapter.name) }
    let encoded = href.split(separator: "/").map {
      String($0).addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? String($0)
    }.joined(separator: "/")
    return "<a href=\"\(escape(encoded))\">\(escape(adapter.name))</a>"
  }

  /// "group 1 (rank 1), shared, queued".
  func describe(_ unit: Unit) -> String {
    "group \(unit.placement.group) (\(span(unit.placement.ranks))), \(unit.placement.placement)"
      + (unit.placement.queued ? ", queued" : "")
  }

  /// "rank 1", "ranks 0–3".
  func span(_ ranks: ClosedRange<Int>) -> String {
    ranks.count == 1 ? "rank \(ranks.lowerBound)" : "ranks \(ranks.lowerBound)–\(ranks.upperBound)"
  }

  /// The status as the table says it.
  func text(_ status: Status) -> String {
    switch status {
    case .finished: return "finished"
    case .skipped: return "skipped (finished in an earlier run)"
    case .halted(let step): return "stopped by successive halving at step \(step)"
    case .unfinished: return "not finished"
    }
  }

  /// The status as a CSS class.
  func kind(_ status: Status) -> String {
    switch status {
    case .finished: return "finished"
    case .skipped: return "skipped"
    case .halted: return "halted"
    case .unfinished: return "unfinished"
    }
  }

  func escape(_ s: String) -> String { SVGChart.escape(s) }
}
