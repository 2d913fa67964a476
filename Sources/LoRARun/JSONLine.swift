import Foundation

/// One JSON object as a line, keys sorted; numbers that JSON cannot hold (NaN, ±infinity)
/// become null.
public func jsonLine(_ object: [String: Any]) -> String {
  let safe = object.mapValues { value -> Any in
    if let number = value as? Double, !number.isFinite { return NSNull() }
    return value
  }
  guard let data = try? JSONSerialization.data(withJSONObject: safe, options: [.sortedKeys]) else {
    return "{\"event\":\"error\",\"message\":\"unserialisable event\"}"
  }
  return String(decoding: data, as: UTF8.self)
}
