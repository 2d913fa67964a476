import Foundation
import LoRATraining

/// The dashboard's timeline: one row per rank group, one bar per unit it trained (from the
/// unit's start to its end, wall time), labelled with its adapters, so the queue's hand-outs
/// show. Inline SVG; each bar's tooltip has the unit's placement and times.
extension JobReport {
  /// The bars' colours by placement.
  static let placementColours = [("fused", "#b07aa1"), ("shared", "#4e79a7"), ("separate", "#59a14f")]
  /// The timeline's tick steps in seconds: round minutes and hours.
  static let timeSteps: [Double] = [
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
  ]

  /// The timeline of `units` with its legend, or a line saying there is none.
  func timeline() -> String {
    let units = self.units
    guard let first = units.map(\.started).min(), let last = units.map(\.ended).max() else {
      return "<p>(no unit recorded its start and end)</p>"
    }
    let groups = Set(units.map(\.placement.group)).sorted()
    let rowHeight = 34.0
    var frame = SVGChart.Frame(x0: 0, x1: max(last - first, 1), y0: 0, y1: Double(groups.count))
    frame.left = 130
    frame.height = frame.top + frame.bottom + rowHeight * Double(groups.count)
    let legend = Self.placementColours.map { "<span><i style=\"background: \($1)\"></i>\($0)</span>" }
      .joined()
    var out =
      "<p class=\"legend\">\(legend)<span>dashed outline: taken from the queue; faded: stopped on request</span></p>\n"
      + "<figure id=\"timeline\" class=\"chart\">" + frame.open(label: "timeline")
    out += frame.xAxis(
      "wall time since the first unit started", steps: Self.timeSteps, tick: { duration($0) })
    for (row, group) in groups.enumerated() {
      let y = frame.top + rowHeight * Double(row)
      let ranks = units.first { $0.placement.group == group }!.placement.ranks
      out +=
        "<text x=\"\(frame.left - 8)\" y=\"\(y + rowHeight / 2 + 4)\" font-size=\"12\" text-anchor=\"end\">"
        + "group \(group) (\(span(ranks)))</text>"
      out +=
        "<line x1=\"\(frame.left)\" x2=\"\(frame.width - frame.right)\" y1=\"\(y + rowHeight)\" "
        + "y2=\"\(y + rowHeight)\" stroke=\"#e4e4e4\"/>"
      for unit in units where unit.placement.group == group {
        out += bar(unit, frame: frame, y: y + 5, height: rowHeight - 10, origin: first)
      }
    }
    return out + "</svg></figure>"
  }

  /// One unit's bar at height `y` in `frame`, `origin` (Unix seconds) at x 0: coloured by
  /// placement, its adapters' names inside as far as they fit, everything in its tooltip.
  func bar(_ unit: Unit, frame: SVGChart.Frame, y: Double, height: Double, origin: Double) -> String {
    let x = frame.px(unit.started - origin)
    let width = max(frame.px(unit.ended - origin) - x, 2)
    let colour = Self.placementColours.first { $0.0 == unit.placement.placement }?.1 ?? "#9c755f"
    let names = unit.placement.adapters.joined(separator: ", ")
    let tip =
      "\(names): \(describe(unit)); \(duration(unit.ended - unit.started)) "
      + "(from \(duration(unit.started - origin)) to \(duration(unit.ended - origin)))"
      + (unit.stopped ? ", stopped on request" : "")
    var out =
      "<g class=\"unit\" data-group=\"\(unit.placement.group)\" data-adapters=\"\(escape(names))\">"
      + "<title>\(escape(tip))</title>"
    out +=
      "<rect x=\"\(x)\" y=\"\(y)\" width=\"\(width)\" height=\"\(height)\" rx=\"3\" "
      + "fill=\"\(colour)\" fill-opacity=\"\(unit.stopped ? 0.45 : 0.85)\" "
      + (unit.placement.queued ? "stroke=\"#333\" stroke-dasharray=\"4 3\"/>" : "stroke=\"#fff\"/>")
    // About 6.5 units per character at size 11: cut the label to the bar.
    let fits = Int((width - 8) / 6.5)
    if fits >= 3 {
      let label = names.count <= fits ? names : String(names.prefix(fits - 1)) + "…"
      out +=
        "<text x=\"\(x + 4)\" y=\"\(y + height / 2 + 4)\" font-size=\"11\" fill=\"#fff\">\(escape(label))</text>"
    }
    return out + "</g>"
  }
}
