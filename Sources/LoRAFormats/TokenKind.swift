/// How a token takes part in encoding and decoding, from its GGUF token type.
enum TokenKind: Sendable, Equatable {
  /// Byte-level text that BPE produces (GGUF types 1 normal and 6 byte).
  case normal
  /// Matched in text only when parsing specials; skippable on decode (types 2 and 3).
  case control
  /// Always matched in text, always decoded literally (type 4).
  case userDefined
  /// Never matched; skippable on decode (type 5).
  case unused

  init(ggufType: Int32) {
    switch ggufType {
    case 2, 3: self = .control
    case 4: self = .userDefined
    case 5: self = .unused
    default: self = .normal
    }
  }

  var isSkippable: Bool { self == .control || self == .unused }
}
