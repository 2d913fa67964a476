/// Any JSON value of a dataset line; integers are told apart from other numbers.
enum JSONLineValue: Decodable {
  case null
  case bool(Bool)
  case integer(Int64)
  case number(Double)
  case string(String)
  case array([JSONLineValue])
  case object([String: JSONLineValue])

  init(from decoder: any Decoder) throws {
    let container = try decoder.singleValueContainer()
    // Integers first: pre-tokenized lines hold thousands of them.
    if container.decodeNil() {
      self = .null
    } else if let value = try? container.decode(Int64.self) {
      self = .integer(value)
    } else if let value = try? container.decode(String.self) {
      self = .string(value)
    } else if let value = try? container.decode(Bool.self) {
      self = .bool(value)
    } else if let value = try? container.decode(Double.self) {
      self = .number(value)
    } else if let value = try? container.decode([JSONLineValue].self) {
      self = .array(value)
    } else {
      self = .object(try container.decode([String: JSONLineValue].self))
    }
  }

  /// "a string", "an integer", … for messages.
  var kind: String {
    switch self {
    case .null: return "null"
    case .bool: return "a boolean"
    case .integer: return "an integer"
    case .number: return "a number"
    case .string: return "a string"
    case .array: return "an array"
    case .object: return "an object"
    }
  }
}
