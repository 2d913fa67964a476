import Foundation
import Testing

@testable import LoRAFormats

/// GPT-2's `bytes_to_unicode`, written out independently of the library's table.
let byteCharacters: [String] = {
  let printable = Set(Array(33...126) + Array(161...172) + Array(174...255))
  var next: UInt32 = 256
  return (0..<256).map { byte in
    if printable.contains(byte) { return String(UnicodeScalar(UInt8(byte))) }
    defer { next += 1 }
    return String(Unicode.Scalar(next)!)
  }
}()

/// Byte-level spelling of plain text, e.g. " the" -> "Ġthe".
private func byteLevel(_ text: String) -> String {
  text.utf8.map { byteCharacters[Int($0)] }.joined()
}

/// A tokenizer whose vocabulary is the 256 byte characters, then every merge result (unless
/// `mergeResultsInVocabulary` is false), then `extra`, then control and user-defined tokens.
/// Merges are given as pairs of plain text, spelled byte-level here.
private func makeTokenizer(
  merges: [(String, String)] = [], extra: [String] = [], control: [String] = [], userDefined: [String] = [],
  preTokenizer: PreTokenizer = .gpt2, mergeResultsInVocabulary: Bool = true, addBOS: Bool = false
) throws -> Tokenizer {
  let byteLevelMerges = merges.map { "\(byteLevel($0)) \(byteLevel($1))" }
  var tokens = byteCharacters
  if mergeResultsInVocabulary { tokens += merges.map { byteLevel($0 + $1) } }
  tokens += extra.map(byteLevel)
  var types = [Int32](repeating: 1, count: tokens.count)
  tokens += control
  types += control.map { _ in 3 }
  tokens += userDefined
  types += userDefined.map { _ in 4 }
  let bos = control.isEmpty ? nil : tokens.count - control.count - userDefined.count
  return try Tokenizer(
    tokens: tokens, tokenTypes: types, merges: byteLevelMerges, bosID: bos, eosID: nil, padID: nil,
    preTokenizer: preTokenizer, addBOS: addBOS)
}

/// The vocabulary strings of encoded ids, byte-level decoded for readability.
private func pieces(_ tokenizer: Tokenizer, _ text: String, parseSpecial: Bool = true) -> [String] {
  tokenizer.encode(text, parseSpecial: parseSpecial).map { tokenizer.decode([$0]) }
}

/// Strings a byte-level tokenizer must give back unchanged, scalar for scalar.
let roundTripTexts = [
  "", "Hello, world!", "I'm sure they'll say WE'RE late", "Grüße, naïve café — 日本語",
  "한국어 텍스트와 中文", "family: 👨‍👩‍👧‍👦, flag: 🇯🇵, skin: 👍🏽",
  "e\u{301} a\u{308}\u{304} \u{1100}\u{1161}\u{11A8}", "\r\n\t  \n\n   x  ", "12345 678.9 ²³ Ⅻ ١٢٣",
  "\u{0}\u{7F}\u{85}\u{A0}\u{2028}\u{FEFF}\u{10FFFF}", "<|im_start|>user\nhi<|im_end|>\n",
]

@Suite struct TokenizerTests {
  // MARK: Pre-tokenizer (expected pieces from Hugging Face tokenizers' own pre-tokenizers)

  @Test func gpt2Splits() {
    let split = { (text: String) -> [String] in PreTokenizer.gpt2.split(text) }
    #expect(
      split("I'm sure they'll say WE'RE late") == [
        "I", "'m", " sure", " they", "'ll", " say", " WE", "'", "RE", " late",
      ])
    #expect(split("   three spaces") == ["  ", " three", " spaces"])
    #expect(split("tab\t\tand  two  ") == ["tab", "\t", "\t", "and", " ", " two", "  "])
    #expect(split("line\n\n  next\r\nend") == ["line", "\n\n ", " next", "\r", "\n", "end"])
    #expect(split("12345 and 3.14") == ["12345", " and", " 3", ".", "14"])
    #expect(split("(hello) naïve?!") == ["(", "hello", ")", " naïve", "?!"])
    #expect(split("e\u{301}te\u{301}").map(\.unicodeScalars.count) == [1, 1, 2, 1])
  }

  @Test func gpt2DigitsSplitsEveryDigit() {
    let split = { (text: String) -> [String] in PreTokenizer.gpt2Digits.split(text) }
    #expect(split("12345 and 3.14") == ["1", "2", "3", "4", "5", " and", " ", "3", ".", "1", "4"])
    #expect(split("   three spaces") == ["  ", " three", " spaces"])
    #expect(split("x²Ⅻ") == ["x", "²", "Ⅻ"])
  }

  @Test func llama3Splits() {
    let split = { (text: String) -> [String] in PreTokenizer.llama3.split(text) }
    #expect(
      split("I'm sure they'll say WE'RE late") == [
        "I", "'m", " sure", " they", "'ll", " say", " WE", "'RE", " late",
      ])
    #expect(split("12345 and 3.14") == ["123", "45", " and", " ", "3", ".", "14"])
    #expect(split("tab\t\tand  two  ") == ["tab", "\t", "\tand", " ", " two", "  "])
    #expect(split("line\n\n  next\r\nend") == ["line", "\n\n", " ", " next", "\r\n", "end"])
    #expect(split("(hello) naïve?!") == ["(hello", ")", " naïve", "?!"])
    #expect(split("e\u{301}te\u{301}").map(\.unicodeScalars.count) == [1, 3, 1])
    // `(?i:…)` case-folds LATIN SMALL LETTER LONG S to "s".
    #expect(split("x'ſx") == ["x", "'ſ", "x"])
  }

  @Test func qwen2SplitsSingleDigits() {
    let split = { (text: String) -> [String] in PreTokenizer.qwen2.split(text) }
    #expect(split("12345 and 3.14") == ["1", "2", "3", "4", "5", " and", " ", "3", ".", "1", "4"])
    #expect(split("line\n\n  next\r\nend") == ["line", "\n\n", " ", " next", "\r\n", "end"])
  }

  @Test(arguments: [PreTokenizer.gpt2, .gpt2Digits, .llama3, .qwen2])
  func piecesJoinBackToTheText(mode: PreTokenizer) {
    for text in roundTripTexts {
      #expect(mode.split(text).joined().unicodeScalars.elementsEqual(text.unicodeScalars))
    }
  }

  @Test func ggufNames() {
    #expect(PreTokenizer(ggufName: "smollm") == .gpt2Digits)
    #expect(PreTokenizer(ggufName: "starcoder") == .gpt2Digits)
    #expect(PreTokenizer(ggufName: "gpt2") == .gpt2)
    #expect(PreTokenizer(ggufName: "default") == .gpt2)
    #expect(PreTokenizer(ggufName: "llama-bpe") == .llama3)
    #expect(PreTokenizer(ggufName: "llama3") == .llama3)
    #expect(PreTokenizer(ggufName: "qwen2") == .qwen2)
    #expect(PreTokenizer(ggufName: "tekken") == nil)
  }

  // MARK: Byte-level BPE

  @Test func byteTableIsGPT2s() {
    #expect(ByteLevel.encoder.map { String($0) } == byteCharacters)
    #expect(byteLevel(" the\n") == "\u{120}the\u{10A}")
    for byte in 0..<256 { #expect(ByteLevel.byte(for: ByteLevel.encoder[byte]) == UInt8(byte)) }
    #expect(ByteLevel.byte(for: " ") == nil)
  }

  @Test func mergesApplyLowestRankFirst() throws {
    #expect(pieces(try makeTokenizer(merges: [("b", "c"), ("a", "b")]), "abc") == ["a", "bc"])
    #expect(pieces(try makeTokenizer(merges: [("a", "b"), ("b", "c")]), "abc") == ["ab", "c"])
    // A later merge builds on an earlier one.
    let chain = try makeTokenizer(
      merges: [("h", "e"), ("l", "l"), ("he", "ll"), ("hell", "o"), (" ", "w"), ("o", "r")])
    #expect(pieces(chain, "hello world") == ["hello", " w", "or", "l", "d"])
  }

  @Test func equalRanksMergeLeftmostFirst() throws {
    let tokenizer = try makeTokenizer(merges: [("a", "a")])
    #expect(pieces(tokenizer, "aaa") == ["aa", "a"])
    #expect(pieces(tokenizer, "aaaaa") == ["aa", "aa", "a"])
    let longer = try makeTokenizer(merges: [("a", "a"), ("aa", "a")])
    #expect(pieces(longer, "aaaa") == ["aa", "aa"])
    #expect(pieces(longer, "aaa") == ["aaa"])
  }

  @Test func mergeResultMissingFromVocabularyFallsBackToBytes() throws {
    let tokenizer = try makeTokenizer(merges: [("a", "b")], mergeResultsInVocabulary: false)
    #expect(tokenizer.encode("ab") == [Int32(UInt8(ascii: "a")), Int32(UInt8(ascii: "b"))])
  }

  @Test func llama3IgnoresMergesForWholeTokens() throws {
    // "abc" is in the vocabulary but no merges lead to it.
    let llama = try makeTokenizer(merges: [("a", "b")], extra: ["abc"], preTokenizer: .llama3)
    #expect(llama.ignoresMerges)
    #expect(pieces(llama, "abc") == ["abc"])
    let gpt2 = try makeTokenizer(merges: [("a", "b")], extra: ["abc"], preTokenizer: .gpt2)
    #expect(pieces(gpt2, "abc") == ["ab", "c"])
  }

  @Test func newlinesAndMultibyteUseByteCharacters() throws {
    let tokenizer = try makeTokenizer()
    #expect(tokenizer.encode("\n") == [10])
    #expect(tokenizer.encode("é") == [0xC3, 0xA9])
    #expect(tokenizer.token(of: 32) == "Ġ")
    #expect(tokenizer.id(of: "Ġ") == 32)
    #expect(tokenizer.vocabularySize == 256)
  }

  // MARK: Special tokens

  @Test func specialTokensStayWhole() throws {
    let tokenizer = try makeTokenizer(
      merges: [("u", "s"), ("us", "e"), ("use", "r")], control: ["<|im_start|>", "<|im_end|>"],
      userDefined: ["<tool>"])
    let start = try #require(tokenizer.id(of: "<|im_start|>"))
    let end = try #require(tokenizer.id(of: "<|im_end|>"))
    let tool = try #require(tokenizer.id(of: "<tool>"))
    let ids = tokenizer.encode("<|im_start|>user\nhi<tool><|im_end|>")
    #expect(ids == [start, tokenizer.id(of: "user")!, 10, 104, 105, tool, end])
    // Not parsed: control tokens become plain text, user-defined ones stay whole.
    let plain = tokenizer.encode("<|im_start|>hi<tool>", parseSpecial: false)
    #expect(!plain.contains(start) && plain.last == tool)
    #expect(tokenizer.decode(plain) == "<|im_start|>hi<tool>")
  }

  @Test func longestSpecialTokenWins() throws {
    let tokenizer = try makeTokenizer(control: ["<s>", "<s>x"])
    let short = try #require(tokenizer.id(of: "<s>"))
    let long = try #require(tokenizer.id(of: "<s>x"))
    #expect(tokenizer.encode("a<s>xy<s>") == [97, long, 121, short])
  }

  @Test func decodeSkipsControlTokensOnRequest() throws {
    let tokenizer = try makeTokenizer(control: ["<|im_end|>"], userDefined: ["<tool>"])
    let ids = tokenizer.encode("hi<|im_end|><tool>")
    #expect(tokenizer.decode(ids) == "hi<|im_end|><tool>")
    #expect(tokenizer.decode(ids, skipSpecial: true) == "hi<tool>")
    #expect(tokenizer.bytes(of: ids[2]) == Array("<|im_end|>".utf8))
    #expect(tokenizer.decode([-1, 99_999, 104]) == "h")
  }

  @Test func bosIsPutFirstWhenAsked() throws {
    let tokenizer = try makeTokenizer(control: ["<|begin_of_text|>"], addBOS: true)
    let bos = try #require(tokenizer.bosID)
    #expect(tokenizer.encode("hi") == [Int32(bos), 104, 105])
  }

  // MARK: Round trips and streaming

  @Test(arguments: [PreTokenizer.gpt2, .gpt2Digits, .llama3, .qwen2])
  func decodeInvertsEncode(mode: PreTokenizer) throws {
    let tokenizer = try makeTokenizer(
      merges: [("t", "h"), ("th", "e"), (" ", "th"), (" ", " "), ("日", "本"), ("e", "\u{301}")],
      control: ["<|im_start|>", "<|im_end|>"],
      preTokenizer: mode)
    for text in roundTripTexts {
      let decoded = tokenizer.decode(tokenizer.encode(text))
      #expect(Array(decoded.utf8) == Array(text.utf8), "\(text.debugDescription)")
    }
  }

  @Test func bytesOfTokensReassemblePartialUTF8() throws {
    let tokenizer = try makeTokenizer()
    let ids = tokenizer.encode("日😀")
    #expect(ids.count == 7)
    #expect(tokenizer.bytes(of: ids[0]) == [0xE6])
    #expect(ids.flatMap(tokenizer.bytes(of:)) == Array("日😀".utf8))
    // A lone continuation byte decodes to U+FFFD.
    #expect(tokenizer.decode([ids[1]]) == "\u{FFFD}")
  }

  @Test func concurrentEncodesAgree() throws {
    let tokenizer = try makeTokenizer(merges: [("h", "e"), ("l", "l"), ("he", "ll"), ("hell", "o")])
    let text = roundTripTexts.joined(separator: " hello ")
    let expected = tokenizer.encode(text)
    let results = LockedResults()
    DispatchQueue.concurrentPerform(iterations: 8) { _ in results.append(tokenizer.encode(text)) }
    #expect(results.all.count == 8 && results.all.allSatisfy { $0 == expected })
  }

  // MARK: Initialiser errors

  @Test func badInputsThrowTypedErrors() {
    #expect(throws: TokenizerError.tokenTypeCountMismatch(tokens: 2, tokenTypes: 1)) {
      _ = try Tokenizer(
        tokens: ["a", "b"], tokenTypes: [1], merges: [], bosID: nil, eosID: nil, padID: nil,
        preTokenizer: .gpt2, addBOS: false)
    }
    #expect(throws: TokenizerError.invalidMerge(source: "merges", index: 1, entry: "ab")) {
      _ = try Tokenizer(
        tokens: ["a", "b"], tokenTypes: nil, merges: ["a b", "ab"], bosID: nil, eosID: nil, padID: nil,
        preTokenizer: .gpt2, addBOS: false)
    }
    #expect(throws: TokenizerError.specialTokenOutOfRange(name: "EOS", id: 5, vocabularySize: 2)) {
      _ = try Tokenizer(
        tokens: ["a", "b"], tokenTypes: nil, merges: [], bosID: nil, eosID: 5, padID: nil,
        preTokenizer: .gpt2, addBOS: false)
    }
    let message = TokenizerError.invalidMerge(source: "merges", index: 1, entry: "ab").description
    #expect(message.contains("merges[1]") && message.contains("two tokens"))
  }
}

final class LockedResults: @unchecked Sendable {
  private let lock = NSLock()
  private var results: [[Int32]] = []

  func append(_ result: [Int32]) {
    lock.lock()
    results.append(result)
    lock.unlock()
  }

  var all: [[Int32]] {
    lock.lock()
    defer { lock.unlock() }
    return results
  }
}
