import Foundation

/// A BPE tokenizer, immutable after init: byte-level (GPT-2, SmolLM2, Qwen2, Llama-3 style) or
/// SentencePiece-style with byte fallback (Llama 2, Mistral, TinyLlama), as `algorithm` says.
///
/// Encoding: special tokens written in the text are cut out first (leftmost, longest match).
/// Byte-level: the text between them is split by the `preTokenizer`, each piece's UTF-8 bytes
/// are mapped through GPT-2's `bytes_to_unicode` table, and merges are applied by rank (lowest
/// rank first, leftmost among ties) until none applies. Decoding maps the byte-level characters
/// back to bytes and decodes UTF-8, replacing invalid sequences with U+FFFD. SentencePiece-style:
/// see `Tokenizer+SentencePiece.swift`.
///
/// Token types follow GGUF: 1 normal, 2 unknown, 3 control, 4 user defined, 5 unused, 6 byte.
/// Control and unknown tokens are matched in text only when `parseSpecial` is true and are
/// dropped by `decode(_:skipSpecial:)` when `skipSpecial` is; user-defined tokens are always
/// matched and always decoded (as llama.cpp and Hugging Face treat non-special added tokens).
public final class Tokenizer: Sendable {
  /// The id of the beginning-of-sequence token, if the vocabulary has one.
  public let bosID: Int?
  /// The id of the end-of-sequence token, if the vocabulary has one.
  public let eosID: Int?
  /// The id of the padding token, if the vocabulary has one.
  public let padID: Int?
  /// The id of the unknown token, if the vocabulary has one (SentencePiece-style tokenizers
  /// emit it for a character whose bytes have no `<0xXX>` tokens).
  public let unkID: Int?
  /// What runs on the text between special tokens.
  public let algorithm: TokenizerAlgorithm
  /// How text is split before byte-level BPE (not used by SentencePiece-style tokenizers, which
  /// report `.gpt2`).
  public let preTokenizer: PreTokenizer
  /// Whether `encode(_:parseSpecial:)` puts `bosID` first.
  public let addBOS: Bool
  /// Whether a piece that is itself a vocabulary token is emitted whole without merging
  /// (Hugging Face `ignore_merges`, on for Llama-3).
  public let ignoresMerges: Bool
  /// Whether text between special tokens is put in Unicode NFC before splitting (Qwen2's
  /// `tokenizer.json` normalizer).
  public let normalizesNFC: Bool

  /// V token strings, byte-level encoded for normal tokens, literal for special ones.
  let tokens: [String]
  let kinds: [TokenKind]
  /// Token string to id; the lowest id wins for duplicates.
  let ids: [String: Int32]
  /// Byte-level: symbol ids of the 256 single-byte symbols, indexed by byte.
  let byteSymbols: [Int32]
  /// SentencePiece-style: the symbol id of each single-scalar symbol, by scalar value.
  let scalarSymbols: [UInt32: Int32]
  /// SentencePiece-style: the id of each byte's `<0xXX>` token, or -1; and the way back.
  let byteTokens: [Int32]
  let tokenBytes: [Int32: UInt8]
  /// Whether `decode` drops one leading space (SentencePiece-style with a space prefix).
  let stripsLeadingSpace: Bool
  /// Symbols that merges produce but the vocabulary lacks; symbol id `V + i` is `extraSymbols[i]`.
  let extraSymbols: [String]
  /// `left << 32 | right` (symbol ids) to `rank << 32 | merged` (symbol id).
  let merges: [UInt64: UInt64]
  let specials: SpecialTokenMatcher
  let cache = PieceCache()

  /// The number of token ids, V.
  public var vocabularySize: Int { tokens.count }

  /// A tokenizer from GGUF-style arrays: `tokens[id]` (byte-level encoded), optional GGUF
  /// token types (nil: all normal), and merges as "left right" strings in rank order.
  /// Llama-3 vocabularies (`preTokenizer == .llama3`) ignore merges for whole-token pieces,
  /// as llama.cpp does.
  public convenience init(
    tokens: [String], tokenTypes: [Int32]?, merges: [String], bosID: Int?, eosID: Int?,
    padID: Int?, preTokenizer: PreTokenizer, addBOS: Bool
  ) throws {
    if let tokenTypes, tokenTypes.count != tokens.count {
      throw TokenizerError.tokenTypeCountMismatch(tokens: tokens.count, tokenTypes: tokenTypes.count)
    }
    let kinds = tokenTypes?.map(TokenKind.init(ggufType:)) ?? Array(repeating: .normal, count: tokens.count)
    let rules = try merges.enumerated().map { index, entry -> MergeRule in
      let (left, right) = try Tokenizer.mergePair(entry, source: "merges", index: index)
      return MergeRule(left: left, right: right, rank: index)
    }
    try self.init(
      tokens: tokens, kinds: kinds, merges: rules, bosID: bosID, eosID: eosID, padID: padID, unkID: nil,
      algorithm: .byteLevelBPE, preTokenizer: preTokenizer, addBOS: addBOS,
      ignoresMerges: preTokenizer == .llama3, normalizesNFC: false, source: "tokenizer")
  }

  /// Two symbols that merge into one, and the merge's priority (lowest rank first).
  struct MergeRule {
    var left: String
    var right: String
    var rank: Int
  }

  /// The designated initializer: every option spelled out. `source` names the origin in errors.
  init(
    tokens: [String], kinds: [TokenKind], merges: [MergeRule], bosID: Int?, eosID: Int?, padID: Int?,
    unkID: Int?, algorithm: TokenizerAlgorithm, preTokenizer: PreTokenizer, addBOS: Bool, ignoresMerges: Bool,
    normalizesNFC: Bool, source: String
  ) throws {
    guard !tokens.isEmpty else { throw TokenizerError.emptyVocabulary(source: source) }
    for (name, id) in [("BOS", bosID), ("EOS", eosID), ("PAD", padID), ("UNK", unkID)] {
      if let id, !tokens.indices.contains(id) {
        throw TokenizerError.specialTokenOutOfRange(name: name, id: id, vocabularySize: tokens.count)
      }
    }
    var ids: [String: Int32] = [:]
    ids.reserveCapacity(tokens.count)
    for (id, token) in tokens.enumerated() where !token.isEmpty && ids[token] == nil {
      ids[token] = Int32(id)
    }

    // Symbols are vocabulary ids, or ids past the vocabulary for strings it lacks.
    var symbols = ids
    var extraSymbols: [String] = []
    func intern(_ symbol: String) -> Int32 {
      if let id = symbols[symbol] { return id }
      let id = Int32(tokens.count + extraSymbols.count)
      extraSymbols.append(symbol)
      symbols[symbol] = id
      return id
    }
    let byteSymbols = algorithm == .byteLevelBPE ? ByteLevel.encoder.map { intern(String($0)) } : []
    var mergeTable: [UInt64: UInt64] = [:]
    mergeTable.reserveCapacity(merges.count)
    for rule in merges {
      let key = Tokenizer.pairKey(intern(rule.left), intern(rule.right))
      if mergeTable[key] == nil {
        mergeTable[key] = UInt64(rule.rank) << 32 | UInt64(UInt32(intern(rule.left + rule.right)))
      }
    }
    let tables = Tokenizer.sentencePieceTables(algorithm: algorithm, symbols: symbols, ids: ids, kinds: kinds)

    self.tokens = tokens
    self.kinds = kinds
    self.ids = ids
    self.byteSymbols = byteSymbols
    self.scalarSymbols = tables.scalarSymbols
    self.byteTokens = tables.byteTokens
    self.tokenBytes = tables.tokenBytes
    self.stripsLeadingSpace = algorithm != .byteLevelBPE && algorithm != .sentencePieceBPE(prefix: .none)
    self.extraSymbols = extraSymbols
    self.merges = mergeTable
    self.specials = SpecialTokenMatcher(tokens: tokens, kinds: kinds)
    self.bosID = bosID
    self.eosID = eosID
    self.padID = padID
    self.unkID = unkID
    self.algorithm = algorithm
    self.preTokenizer = preTokenizer
    self.addBOS = addBOS
    self.ignoresMerges = ignoresMerges
    self.normalizesNFC = normalizesNFC
  }

  /// Splits a "left right" merge at its first space after the first character (as llama.cpp).
  static func mergePair(_ entry: String, source: String, index: Int) throws -> (String, String) {
    let scalars = Array(entry.unicodeScalars)
    guard scalars.count >= 3, let space = scalars[1...].firstIndex(of: " "), space + 1 < scalars.count
    else { throw TokenizerError.invalidMerge(source: source, index: index, entry: entry) }
    let left = String(String.UnicodeScalarView(scalars[..<space]))
    let right = String(String.UnicodeScalarView(scalars[(space + 1)...]))
    return (left, right)
  }

  static func pairKey(_ left: Int32, _ right: Int32) -> UInt64 {
    UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
  }

  // MARK: Encoding

  /// Encodes text; special tokens (GGUF token type 3 CONTROL or 4 USER_DEFINED, or
  /// tokenizer.json added_tokens) written literally in the text become their single id when
  /// `parseSpecial` is true. User-defined tokens are matched even when it is false. Puts
  /// `bosID` first when `addBOS` is true, or as `withBOS` says when given (chat text,
  /// whose template writes its own BOS, is encoded with `withBOS: false`).
  public func encode(_ text: String, parseSpecial: Bool = true, withBOS: Bool? = nil) -> [Int32] {
    var output: [Int32] = []
    output.reserveCapacity(text.utf8.count / 3 + 1)
    if withBOS ?? addBOS, let bosID { output.append(Int32(bosID)) }
    let scalars = Array(text.unicodeScalars)
    var encoder = PieceEncoder(tokenizer: self)
    func encodeOrdinary(_ range: Range<Int>) {
      switch algorithm {
      case .byteLevelBPE: encoder.encodeOrdinary(scalars[range], into: &output)
      case .sentencePieceBPE(let prefix): encodeSentencePiece(scalars[range], prefix: prefix, into: &output)
      }
    }
    var start = 0
    var position = 0
    while position < scalars.count {
      if let match = specials.longestMatch(in: scalars, at: position, parseSpecial: parseSpecial) {
        encodeOrdinary(start..<position)
        output.append(match.id)
        position += match.length
        start = position
      } else {
        position += 1
      }
    }
    encodeOrdinary(start..<scalars.count)
    return output
  }

  /// The ids of one pre-tokenizer piece given as UTF-8 bytes, appended to `output`.
  func encodePiece(_ bytes: [UInt8], into output: inout [Int32]) {
    if ignoresMerges {
      var text = String.UnicodeScalarView()
      for byte in bytes { text.append(ByteLevel.encoder[Int(byte)]) }
      if let id = ids[String(text)] {
        output.append(id)
        return
      }
    }
    var symbols = bytes.map { byteSymbols[Int($0)] }
    applyMerges(&symbols)
    for symbol in symbols {
      if Int(symbol) < tokens.count {
        output.append(symbol)
        continue
      }
      // A merge result missing from the vocabulary falls back to its single characters.
      for scalar in extraSymbols[Int(symbol) - tokens.count].unicodeScalars {
        if let id = ids[String(scalar)] { output.append(id) }
      }
    }
  }

  /// Applies merges to a sequence of symbol ids, lowest rank first and leftmost among equal
  /// ranks, until none applies. Runs in O(n log n) with a heap of candidate pairs.
  func applyMerges(_ symbols: inout [Int32]) {
    let count = symbols.count
    guard count > 1 else { return }
    var next = (0..<count).map { Int32($0 + 1) }
    next[count - 1] = -1
    var previous = (0..<count).map { Int32($0 - 1) }
    var alive = [Bool](repeating: true, count: count)
    var heap = MinHeap()
    func push(_ position: Int, _ right: Int) {
      if let merge = merges[Tokenizer.pairKey(symbols[position], symbols[right])] {
        heap.push(merge & 0xFFFF_FFFF_0000_0000 | UInt64(position))
      }
    }
    for position in 0..<(count - 1) { push(position, position + 1) }
    while let top = heap.pop() {
      let position = Int(top & 0xFFFF_FFFF)
      guard alive[position], next[position] >= 0 else { continue }
      let right = Int(next[position])
      guard let merge = merges[Tokenizer.pairKey(symbols[position], symbols[right])],
        merge >> 32 == top >> 32
      else { continue }
      symbols[position] = Int32(truncatingIfNeeded: merge & 0xFFFF_FFFF)
      alive[right] = false
      next[position] = next[right]
      if next[right] >= 0 { previous[Int(next[right])] = Int32(position) }
      if previous[position] >= 0 { push(Int(previous[position]), position) }
      if next[position] >= 0 { push(position, Int(next[position])) }
    }
    var merged: [Int32] = []
    var position = 0
    while position >= 0 {
      merged.append(symbols[position])
      position = Int(next[position])
    }
    symbols = merged
  }

  // MARK: Decoding and lookup

  /// Decodes ids to text; ids outside the vocabulary are skipped, and so are control, unknown
  /// and unused tokens when `skipSpecial` is true. Invalid UTF-8 becomes U+FFFD.
  /// SentencePiece-style tokenizers with a space prefix drop one leading space of the result
  /// (as Hugging Face's `Strip` decoder does).
  public func decode(_ ids: [Int32], skipSpecial: Bool = false) -> String {
    var bytes: [UInt8] = []
    bytes.reserveCapacity(ids.count * 4)
    for id in ids where tokens.indices.contains(Int(id)) {
      if skipSpecial && kinds[Int(id)].isSkippable { continue }
      appendBytes(of: Int(id), to: &bytes)
    }
    if stripsLeadingSpace && bytes.first == UInt8(ascii: " ") {
      return String(decoding: bytes[1...], as: UTF8.self)
    }
    return String(decoding: bytes, as: UTF8.self)
  }

  /// The raw bytes a token stands for (for streaming decode of partial UTF-8); special
  /// tokens give their literal text, ids outside the vocabulary give no bytes. A
  /// SentencePiece-style "▁" gives a space (the leading one is kept).
  public func bytes(of id: Int32) -> [UInt8] {
    guard tokens.indices.contains(Int(id)) else { return [] }
    var bytes: [UInt8] = []
    appendBytes(of: Int(id), to: &bytes)
    return bytes
  }

  private func appendBytes(of id: Int, to bytes: inout [UInt8]) {
    if case .sentencePieceBPE = algorithm {
      appendSentencePieceBytes(of: id, to: &bytes)
      return
    }
    let token = tokens[id]
    guard kinds[id] == .normal else {
      bytes.append(contentsOf: token.utf8)
      return
    }
    let start = bytes.count
    for scalar in token.unicodeScalars {
      guard let byte = ByteLevel.byte(for: scalar) else {
        // Not byte-level text: the token stands for its own UTF-8 (as Hugging Face decodes it).
        bytes.removeSubrange(start...)
        bytes.append(contentsOf: token.utf8)
        return
      }
      bytes.append(byte)
    }
  }

  /// The id of a token written exactly as in the vocabulary, e.g. "<|im_end|>" or "Ġthe".
  public func id(of token: String) -> Int32? {
    ids[token]
  }

  /// The vocabulary string of an id (byte-level encoded for normal tokens of byte-level
  /// tokenizers, with "▁" for spaces in SentencePiece-style ones), nil if out of range.
  public func token(of id: Int32) -> String? {
    tokens.indices.contains(Int(id)) ? tokens[Int(id)] : nil
  }
}
