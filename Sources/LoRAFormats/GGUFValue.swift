/// One metadata value of a GGUF file.
public enum GGUFValue: Sendable, Equatable {
  case uint8(UInt8)
  case int8(Int8)
  case uint16(UInt16)
  case int16(Int16)
  case uint32(UInt32)
  case int32(Int32)
  case uint64(UInt64)
  case int64(Int64)
  case float32(Float)
  case float64(Double)
  case bool(Bool)
  case string(String)
  case array([GGUFValue])

  /// The value as an integer, when it is one of the integer types.
  public var int: Int? {
    switch self {
    case .uint8(let v): return Int(v)
    case .int8(let v): return Int(v)
    case .uint16(let v): return Int(v)
    case .int16(let v): return Int(v)
    case .uint32(let v): return Int(v)
    case .int32(let v): return Int(v)
    case .uint64(let v): return Int(exactly: v)
    case .int64(let v): return Int(v)
    default: return nil
    }
  }

  /// The value as a floating-point number, when it is numeric.
  public var double: Double? {
    switch self {
    case .float32(let v): return Double(v)
    case .float64(let v): return v
    default: return int.map(Double.init)
    }
  }

  public var string: String? {
    if case .string(let s) = self { return s }
    return nil
  }

  public var bool: Bool? {
    if case .bool(let b) = self { return b }
    return nil
  }

  public var array: [GGUFValue]? {
    if case .array(let a) = self { return a }
    return nil
  }

  /// A short rendering for `inspect`: arrays show their length and first elements.
  public var summary: String {
    switch self {
    case .string(let s): return s.count > 60 ? "\"\(s.prefix(57))...\"" : "\"\(s)\""
    case .array(let a):
      let head = a.prefix(3).map(\.summary).joined(separator: ", ")
      return "[\(a.count) items: \(head)\(a.count > 3 ? ", ..." : "")]"
    case .bool(let b): return String(b)
    case .float32(let v): return String(v)
    case .float64(let v): return String(v)
    default: return int.map(String.init) ?? "?"
    }
  }
}
