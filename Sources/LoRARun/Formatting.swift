import Foundation

/// 134515008 → "134,515,008".
public func grouped(_ value: Int) -> String {
  let digits = Array(String(value))
  var out = ""
  for (i, d) in digits.enumerated() {
    if i > 0 && (digits.count - i) % 3 == 0 { out += "," }
    out.append(d)
  }
  return out
}

/// 2.345 with 2 decimals → "2.35"; not finite → "-".
public func format(_ value: Double, _ decimals: Int) -> String {
  guard value.isFinite else { return "-" }
  var scale = 1.0
  for _ in 0..<decimals { scale *= 10 }
  let rounded = (value * scale).rounded() / scale
  var text = String(rounded)
  if let dot = text.firstIndex(of: ".") {
    let have = text.distance(from: dot, to: text.endIndex) - 1
    if decimals == 0 {
      text = String(text[..<dot])
    } else if have < decimals {
      text += String(repeating: "0", count: decimals - have)
    }
  }
  return text
}

/// 1536 → "1.5 KiB".
public func formatBytes(_ bytes: Int) -> String {
  let units = ["B", "KiB", "MiB", "GiB", "TiB"]
  var value = Double(bytes)
  var unit = 0
  while value >= 1024 && unit < units.count - 1 {
    value /= 1024
    unit += 1
  }
  return value == value.rounded() ? "\(Int(value)) \(units[unit])" : "\(format(value, 1)) \(units[unit])"
}

/// 3725 seconds → "1h02m05s".
public func duration(_ seconds: Double) -> String {
  guard seconds.isFinite else { return "-" }
  let s = Int(seconds.rounded())
  if s >= 3600 { return String(format: "%dh%02dm%02ds", s / 3600, s / 60 % 60, s % 60) }
  if s >= 60 { return String(format: "%dm%02ds", s / 60, s % 60) }
  return "\(s)s"
}
