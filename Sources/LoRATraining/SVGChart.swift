import Foundation

/// Inline SVG charts for the HTML reports (an adapter's `TrainingReport`, a job's
/// dashboard): a plot frame with its scales, axes with round ticks (at most five per axis), and line or dot
/// series. Plain markup and CSS, readable offline; no script.
public enum SVGChart {
  /// How a series is drawn.
  public enum Style: Sendable {
    case line, dots, lineAndDots
  }

  /// One series: points (x, y) in data units, drawn in `color`; `title` becomes a tooltip.
  public struct Series {
    public var points: [(Double, Double)]
    public var color: String
    public var style: Style
    public var title: String?

    public init(points: [(Double, Double)], color: String, style: Style = .line, title: String? = nil) {
      self.points = points
      self.color = color
      self.style = style
      self.title = title
    }
  }

  /// The plot area of a chart `width` × `height` (SVG units) with margins, and the data
  /// ranges [x0, x1] × [y0, y1] it maps onto it.
  public struct Frame {
    public var width = 900.0, height = 330.0, left = 60.0, bottom = 40.0, top = 30.0, right = 20.0
    public var x0: Double, x1: Double, y0: Double, y1: Double

    public init(x0: Double, x1: Double, y0: Double, y1: Double) {
      (self.x0, self.x1, self.y0, self.y1) = (x0, x1, y0, y1)
    }

    /// The frame that holds `points` (finite ones): x from the least to the greatest (at
    /// least 1 wide), y padded by 5% (not below 0 when no value is negative).
    public init?(fitting points: [(Double, Double)]) {
      let all = points.filter { $0.1.isFinite }
      guard let xMin = all.map(\.0).min(), let xMax = all.map(\.0).max(), let yMin = all.map(\.1).min(),
        let yMax = all.map(\.1).max()
      else { return nil }
      var (y0, y1) = (yMin, yMax)
      if y1 - y0 < 1e-9 { (y0, y1) = (y0 - 1, y1 + 1) }
      let pad = (y1 - y0) * 0.05
      self.init(x0: xMin, x1: max(xMax, xMin + 1), y0: yMin >= 0 ? max(0, y0 - pad) : y0 - pad, y1: y1 + pad)
    }

    /// The SVG x of data x.
    public func px(_ x: Double) -> Double { left + (x - x0) / (x1 - x0) * (width - left - right) }
    /// The SVG y of data y.
    public func py(_ y: Double) -> Double { height - bottom - (y - y0) / (y1 - y0) * (height - bottom - top) }

    /// The opening `<svg>` tag, sized to the page's width.
    public func open(label: String) -> String {
      "<svg viewBox=\"0 0 \(Int(width)) \(Int(height))\" width=\"100%\" role=\"img\" aria-label=\"\(escape(label))\">"
    }

    /// Ticks on the x axis at round values (`xTicks(steps:)`, labels from `xTick`) and the
    /// axis label `xLabel`.
    public func xAxis(
      _ xLabel: String, steps: [Double]? = nil, tick xTick: (Double) -> String = { String(Int($0.rounded())) }
    ) -> String {
      var out = ""
      for x in xTicks(steps: steps) {
        out +=
          "<text x=\"\(px(x))\" y=\"\(height - bottom + 16)\" font-size=\"11\" text-anchor=\"middle\">\(xTick(x))</text>"
      }
      return out
        + "<text x=\"\((width + left) / 2)\" y=\"\(height - 6)\" font-size=\"12\" text-anchor=\"middle\">\(escape(xLabel))</text>"
    }

    /// The multiples in [x0, x1] of the least step that makes at most five ticks: one of
    /// `steps` (ascending), or else of 1, 2 or 5 × 10^k, at least 1 (updates and seconds are
    /// whole): [0, 2, 4, 6] for updates 0...6.
    public func xTicks(steps: [Double]? = nil) -> [Double] {
      let rough = (x1 - x0) / 4
      let magnitude = pow(10, (log10(max(rough, 1))).rounded(.down))
      let step =
        steps?.first { $0 >= rough } ?? [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= rough } ?? 10
        * magnitude
      return Self.multiples(of: step, in: x0...x1)
    }

    /// The multiples in `range` of the least step of 1, 2 or 5 × 10^k that makes two to five
    /// ticks: [1, 2, 3, 4] for losses 0.04...4.4, [2, 4, 6, 8] for 0.04...8.2.
    public static func roundTicks(_ range: ClosedRange<Double>) -> [Double] {
      let span = max(range.upperBound - range.lowerBound, 1e-12)
      var magnitude = pow(10, (log10(span / 5)).rounded(.down))
      for _ in 0..<4 {
        for factor in [1.0, 2, 5] {
          let ticks = multiples(of: factor * magnitude, in: range)
          if ticks.count <= 5 && ticks.count >= 2 { return ticks }
        }
        magnitude *= 10
      }
      return [range.lowerBound, range.upperBound]
    }

    /// The multiples of `step` in `range`.
    static func multiples(of step: Double, in range: ClosedRange<Double>) -> [Double] {
      var ticks: [Double] = []
      var k = (range.lowerBound / step).rounded(.up)
      while k * step <= range.upperBound + step * 1e-9 {
        ticks.append(k * step)
        k += 1
      }
      return ticks
    }

    /// Horizontal grid lines at round y values (at most five), and the axis label `yLabel`.
    public func yAxis(_ yLabel: String) -> String {
      var out = ""
      for y in Self.roundTicks(y0...y1) {
        out +=
          "<line x1=\"\(left)\" x2=\"\(width - right)\" y1=\"\(py(y))\" y2=\"\(py(y))\" stroke=\"#e4e4e4\"/>"
        out +=
          "<text x=\"\(left - 6)\" y=\"\(py(y) + 4)\" font-size=\"11\" text-anchor=\"end\">\(short(y))</text>"
      }
      return out + "<text x=\"\(left)\" y=\"\(top - 12)\" font-size=\"12\">\(escape(yLabel))</text>"
    }

    /// `series` drawn in this frame: a `<polyline>` per line, a `<circle>` per dot.
    public func draw(_ series: Series) -> String {
      let valid = series.points.filter { $0.1.isFinite }
      guard !valid.isEmpty else { return "" }
      var out = ""
      if series.style != .dots {
        let path = valid.map { "\(px($0.0)),\(py($0.1))" }.joined(separator: " ")
        out += element(
          "polyline", "fill=\"none\" stroke=\"\(series.color)\" stroke-width=\"1.6\" points=\"\(path)\"",
          title: series.title)
      }
      if series.style != .line {
        let radius = series.style == .dots ? "3.5" : "2.5"
        for (x, y) in valid {
          out += element(
            "circle", "cx=\"\(px(x))\" cy=\"\(py(y))\" r=\"\(radius)\" fill=\"\(series.color)\"",
            title: series.title)
        }
      }
      return out
    }
  }

  /// `<name attributes/>`, or with a `<title>` inside (a tooltip) when `title` is given.
  public static func element(_ name: String, _ attributes: String, title: String?) -> String {
    guard let title else { return "<\(name) \(attributes)/>" }
    return "<\(name) \(attributes)><title>\(escape(title))</title></\(name)>"
  }

  /// A chart of `series` against updates, with axes and round ticks; "(no data)"
  /// when no series has a finite point.
  public static func lines(_ series: [Series], yLabel: String, xLabel: String = "update") -> String {
    guard let frame = Frame(fitting: series.flatMap(\.points)) else { return "<p>(no data)</p>" }
    return frame.open(label: yLabel) + frame.yAxis(yLabel) + frame.xAxis(xLabel)
      + series.map(frame.draw).joined() + "</svg>"
  }

  /// Ten colours that tell series apart (Tableau 10); series `i` takes `palette[i % 10]`.
  public static let palette = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
    "#bab0ac",
  ]

  /// The reports' shared style: page, headings, tables, charts.
  public static let style = """
    body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 980px; color: #222; padding: 0 1em; }
    h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
    table { border-collapse: collapse; } th, td { text-align: left; padding: .2em 1.2em .2em 0; vertical-align: top; }
    th { font-weight: 600; color: #444; } svg { background: #fafafa; border: 1px solid #ddd; }
    .legend span { margin-right: 1.5em; }
    """

  /// 1234.5 → "1235"; 0.012345 → "0.0123".
  public static func short(_ v: Double) -> String {
    abs(v) >= 100 ? String(Int(v.rounded())) : String(format: "%.3g", v)
  }

  /// `s` with `&`, `<`, `>` and `"` escaped for HTML text and attributes.
  public static func escape(_ s: String) -> String {
    s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
      .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
  }
}
