/// A list setting that may also be written as its one element (`targets: all-linear`,
/// `layers: 3`): decodes either form, encodes the list, and is left out when unset.
@propertyWrapper
public struct ListOrOne<Element: Codable & Equatable & Sendable>: Codable, Equatable, Sendable {
  public var wrappedValue: [Element]?

  public init(wrappedValue: [Element]?) { self.wrappedValue = wrappedValue }

  public init(from decoder: any Decoder) throws {
    let container = try decoder.singleValueContainer()
    if container.decodeNil() {
      wrappedValue = nil
    } else if let one = try? container.decode(Element.self) {
      wrappedValue = [one]
    } else {
      wrappedValue = try container.decode([Element].self)
    }
  }

  public func encode(to encoder: any Encoder) throws {
    var container = encoder.singleValueContainer()
    try container.encode(wrappedValue)
  }
}

extension KeyedDecodingContainer {
  /// An absent key is an unset list.
  public func decode<Element>(_ type: ListOrOne<Element>.Type, forKey key: Key) throws -> ListOrOne<Element> {
    try decodeIfPresent(type, forKey: key) ?? ListOrOne(wrappedValue: nil)
  }
}

extension KeyedEncodingContainer {
  /// An unset list is left out, as every other unset setting is.
  public mutating func encode<Element>(_ value: ListOrOne<Element>, forKey key: Key) throws {
    try encodeIfPresent(value.wrappedValue, forKey: key)
  }
}
