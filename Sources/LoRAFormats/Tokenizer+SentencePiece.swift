/// SentencePiece-style BPE with byte fallback (Llama 2, Mistral, TinyLlama), after llama.cpp's
/// `llm_tokenizer_spm` and Hugging Face's BPE with `byte_fallback`.
///
/// Encoding a stretch of text between special tokens: every space becomes "▁" (U+2581), a "▁"
/// goes in front as the `SpacePrefix` says, and the text is split into Unicode scalars. Merges
/// then apply to the whole stretch (there is no pre-tokenizer), highest priority first and
/// leftmost among ties, until none applies. A symbol that is not a vocabulary token (a
/// character outside the vocabulary) becomes the `<0xXX>` tokens of its UTF-8 bytes, or the
/// unknown token when one of them is missing.
///
/// Decoding: "▁" becomes a space, a `<0xXX>` token its byte, and the bytes are read as UTF-8;
/// one leading space is dropped when the tokenizer adds a prefix.
extension Tokenizer {
  /// A SentencePiece-style tokenizer from GGUF-style arrays (`tokenizer.ggml.model` "llama"):
  /// `tokens[id]` with "▁" for spaces, `scores[id]`, and optional GGUF token types (nil: all
  /// normal; 6 marks the `<0xXX>` byte tokens).
  ///
  /// As in llama.cpp, two adjacent symbols merge when their concatenation is a token, the one
  /// with the highest score first. Only normal tokens (type 1) are merge results, as in
  /// SentencePiece, so control, byte and user-defined tokens never come out of merging.
  public convenience init(
    tokens: [String], scores: [Float], tokenTypes: [Int32]?, bosID: Int?, eosID: Int?, unkID: Int?,
    padID: Int?, addBOS: Bool, addSpacePrefix: Bool
  ) throws {
    if let tokenTypes, tokenTypes.count != tokens.count {
      throw TokenizerError.tokenTypeCountMismatch(tokens: tokens.count, tokenTypes: tokenTypes.count)
    }
    guard scores.count == tokens.count else {
      throw TokenizerError.scoreCountMismatch(tokens: tokens.count, scores: scores.count)
    }
    let kinds = tokenTypes?.map(TokenKind.init(ggufType:)) ?? Array(repeating: .normal, count: tokens.count)
    let merges = Tokenizer.scoreMerges(tokens: tokens, scores: scores) { id in
      tokenTypes.map { $0[id] == 1 } ?? true
    }
    try self.init(
      tokens: tokens, kinds: kinds, merges: merges, bosID: bosID, eosID: eosID, padID: padID, unkID: unkID,
      algorithm: .sentencePieceBPE(prefix: addSpacePrefix ? .always : .none), preTokenizer: .gpt2,
      addBOS: addBOS, ignoresMerges: false, normalizesNFC: false, source: "tokenizer")
  }

  /// Every way to cut a mergeable token in two parts that can each be a symbol (a token, or a
  /// single scalar), ranked by the token's score: rank 0 for the highest score, and one rank
  /// per distinct score, so that merges into tokens of equal score tie and the leftmost wins.
  static func scoreMerges(tokens: [String], scores: [Float], isMergeable: (Int) -> Bool) -> [MergeRule] {
    var vocabulary = Set<String>(minimumCapacity: tokens.count)
    for token in tokens where !token.isEmpty { vocabulary.insert(token) }
    let distinct = Set(scores.filter { !$0.isNaN }).sorted(by: >)
    let rankOfScore = Dictionary(uniqueKeysWithValues: distinct.enumerated().map { ($1, $0) })
    var rules: [MergeRule] = []
    var seen = Set<String>(minimumCapacity: tokens.count)
    for (id, token) in tokens.enumerated() where isMergeable(id) {
      guard let rank = rankOfScore[scores[id]], seen.insert(token).inserted else { continue }
      let scalars = Array(token.unicodeScalars)
      guard scalars.count >= 2 else { continue }
      for cut in 1..<scalars.count {
        let left = String(String.UnicodeScalarView(scalars[..<cut]))
        let right = String(String.UnicodeScalarView(scalars[cut...]))
        guard cut == 1 || vocabulary.contains(left), cut == scalars.count - 1 || vocabulary.contains(right)
        else { continue }
        rules.append(MergeRule(left: left, right: right, rank: rank))
      }
    }
    return rules
  }

  /// The lookup tables of the SentencePiece-style algorithm (empty for byte-level BPE): symbol
  /// ids of single scalars, and the ids of the 256 `<0xXX>` tokens (of kind normal) both ways.
  static func sentencePieceTables(
    algorithm: TokenizerAlgorithm, symbols: [String: Int32], ids: [String: Int32], kinds: [TokenKind]
  ) -> (scalarSymbols: [UInt32: Int32], byteTokens: [Int32], tokenBytes: [Int32: UInt8]) {
    guard case .sentencePieceBPE = algorithm else { return ([:], [], [:]) }
    var scalarSymbols: [UInt32: Int32] = [:]
    for (text, symbol) in symbols {
      var scalars = text.unicodeScalars.makeIterator()
      if let scalar = scalars.next(), scalars.next() == nil { scalarSymbols[scalar.value] = symbol }
    }
    var byteTokens = [Int32](repeating: -1, count: 256)
    var tokenBytes: [Int32: UInt8] = [:]
    for byte in 0..<256 {
      let hex = String(byte, radix: 16, uppercase: true)
      guard let id = ids["<0x\(byte < 16 ? "0" : "")\(hex)>"], kinds[Int(id)] == .normal else { continue }
      byteTokens[byte] = id
      tokenBytes[id] = UInt8(byte)
    }
    return (scalarSymbols, byteTokens, tokenBytes)
  }

  /// Appends the ids of `text`, a stretch between special tokens (the whole text when
  /// `text.startIndex` is 0 and nothing follows).
  func encodeSentencePiece(
    _ text: ArraySlice<Unicode.Scalar>, prefix: SpacePrefix, into output: inout [Int32]
  ) {
    guard let first = text.first else { return }
    let startsWithSpace = first == " " || first == "▁"
    let addsPrefix: Bool
    switch prefix {
    case .none: addsPrefix = false
    case .always: addsPrefix = true
    case .unlessSpace: addsPrefix = !startsWithSpace
    case .firstUnlessSpace: addsPrefix = text.startIndex == 0 && !startsWithSpace
    }
    // A scalar that is no symbol gets a negative id, ~value, that no merge names.
    func symbol(_ scalar: Unicode.Scalar) -> Int32 {
      let value = scalar == " " ? 0x2581 : scalar.value
      return scalarSymbols[value] ?? ~Int32(value)
    }
    var symbols: [Int32] = []
    symbols.reserveCapacity(text.count + 1)
    if addsPrefix { symbols.append(symbol("▁")) }
    for scalar in text { symbols.append(symbol(scalar)) }
    applyMerges(&symbols)
    var previousWasUnknown = false
    for symbol in symbols {
      if symbol >= 0 && Int(symbol) < tokens.count {
        output.append(symbol)
        previousWasUnknown = false
      } else if symbol < 0 {
        appendByteFallback(Unicode.Scalar(UInt32(~symbol))!, &previousWasUnknown, into: &output)
      } else {
        for scalar in extraSymbols[Int(symbol) - tokens.count].unicodeScalars {
          appendByteFallback(scalar, &previousWasUnknown, into: &output)
        }
      }
    }
  }

  /// The `<0xXX>` tokens of a scalar's UTF-8 bytes; when one of them is missing, the unknown
  /// token instead (once for a run of such scalars, as Hugging Face's `fuse_unk`), or nothing.
  private func appendByteFallback(
    _ scalar: Unicode.Scalar, _ previousWasUnknown: inout Bool, into output: inout [Int32]
  ) {
    let start = output.count
    var complete = true
    UTF8.encode(scalar) { byte in
      let id = byteTokens[Int(byte)]
      if id >= 0 { output.append(id) } else { complete = false }
    }
    if complete {
      previousWasUnknown = false
      return
    }
    output.removeSubrange(start...)
    if let unkID, !previousWasUnknown { output.append(Int32(unkID)) }
    previousWasUnknown = true
  }

  /// The bytes of a token: a byte token's byte, "▁" as a space in normal and user-defined
  /// tokens, and control, unknown and unused tokens literally.
  func appendSentencePieceBytes(of id: Int, to bytes: inout [UInt8]) {
    if let byte = tokenBytes[Int32(id)] {
      bytes.append(byte)
      return
    }
    let token = tokens[id]
    switch kinds[id] {
    case .normal, .userDefined:
      for scalar in token.unicodeScalars {
        if scalar == "▁" { bytes.append(UInt8(ascii: " ")) } else { UTF8.encode(scalar) { bytes.append($0) } }
      }
    case .control, .unused:
      bytes.append(contentsOf: token.utf8)
    }
  }
}
