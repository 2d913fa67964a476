import LoRAFormats

/// Tokens and flags of one example, appended piece by piece.
struct SequenceBuilder {
  let tokenizer: Tokenizer
  private(set) var tokens: [Int32] = []
  private(set) var trained: [Bool] = []
  /// Whether `encode` puts a BOS first, which is kept once, at the start.
  private let encodeAddsBOS: Bool

  init(tokenizer: Tokenizer) {
    self.tokenizer = tokenizer
    encodeAddsBOS = tokenizer.addBOS && tokenizer.bosID != nil
    if encodeAddsBOS, let bos = tokenizer.bosID {
      tokens.append(Int32(bos))
      trained.append(false)
    }
  }

  mutating func append(_ text: String, trained flag: Bool) {
    let ids = tokenizer.encode(text).dropFirst(encodeAddsBOS ? 1 : 0)
    tokens += ids
    trained += repeatElement(flag, count: ids.count)
  }

  mutating func append(id: Int32, trained flag: Bool) {
    tokens.append(id)
    trained.append(flag)
  }

  var example: Example { Example(tokens: tokens, trained: trained) }
}
