/// The `rank` setting: a number, or `auto` ("start low, raise if needed": climb
/// `rank_ladder`, or the default ladder, while the validation loss improves). Decodes
/// either form, encodes what was written, and is left out when unset. Setting a number
/// clears `auto`.
@propertyWrapper
public struct RankOrAuto: Codable, Equatable, Sendable {
  public var wrappedValue: Int? { didSet { if wrappedValue != nil { isAuto = false } } }
  /// Whether the rank was given as `auto`.
  public var isAuto: Bool

  public init(wrappedValue: Int?) { (self.wrappedValue, isAuto) = (wrappedValue, false) }

  /// `settings.$rank`: whether the rank is `auto` (setting true clears a number).
  public var projectedValue: Bool {
    get { isAuto }
    set {
      if newValue { wrappedValue = nil }
      isAuto = newValue
    }
  }

  public init(from decoder: any Decoder) throws {
    let container = try decoder.singleValueContainer()
    (wrappedValue, isAuto) = (nil, false)
    if container.decodeNil() { return }
    // A number first: YAML reads a plain `4` as a string too.
    if let rank = try? container.decode(Int.self) {
      wrappedValue = rank
    } else if let text = try? container.decode(String.self), text == "auto" {
      isAuto = true
    } else {
      throw DecodingError.dataCorruptedError(
        in: container, debugDescription: "expected a rank (a whole number) or auto")
    }
  }

  public func encode(to encoder: any Encoder) throws {
    var container = encoder.singleValueContainer()
    if isAuto { try container.encode("auto") } else { try container.encode(wrappedValue) }
  }
}

extension KeyedDecodingContainer {
  /// An absent key is an unset rank.
  public func decode(_ type: RankOrAuto.Type, forKey key: Key) throws -> RankOrAuto {
    try decodeIfPresent(type, forKey: key) ?? RankOrAuto(wrappedValue: nil)
  }
}

extension KeyedEncodingContainer {
  /// An unset rank is left out, as every other unset setting is.
  public mutating func encode(_ value: RankOrAuto, forKey key: Key) throws {
    if value.isAuto {
      try encode("auto", forKey: key)
    } else {
      try encodeIfPresent(value.wrappedValue, forKey: key)
    }
  }
}
