import Foundation
import Testing

@testable import LoRAFormats

/// SentencePiece-style BPE with byte fallback (Llama 2, Mistral, TinyLlama), against the ids of
/// `sentencepiece` and Hugging Face `tokenizers` recorded by scripts/make_spm_tokenizer_fixtures.py.
///
/// Which reference applies where:
/// - `sentencepiece` never matches special tokens written in the text, so it is the reference for
///   `encode(_:parseSpecial: false)`; with them parsed the ids differ for every text containing
///   `<s>`, `</s>` or `<unk>`, by design.
/// - Hugging Face's Llama 2 layout (`Prepend("▁")` normalizer) and llama.cpp both put "▁" before
///   every stretch between special tokens; that is the reference for the GGUF and Llama 2
///   `tokenizer.json` paths with `parseSpecial: true`, and it agrees with `sentencepiece` on
///   every text without special tokens.
/// - The Metaspace layout (Mistral v0.3) adds no "▁" when the text starts with a space or "▁",
///   nor after a special token, so its ids differ from `sentencepiece` there (recorded as such).
@Suite struct SentencePieceTokenizerTests {
  @Test(.enabled(if: spmFixturesExist, "Fixtures/tokenizer-spm* are missing"))
  func ggufMatchesReference() throws {
    let tokenizer = try Tokenizer(
      gguf: GGUFFile(path: try #require(spmFixture("tokenizer-spm", "gguf")).path))
    #expect(tokenizer.algorithm == .sentencePieceBPE(prefix: .always))
    #expect(tokenizer.bosID == 1 && tokenizer.eosID == 2 && tokenizer.unkID == 0 && tokenizer.addBOS)
    try expectLlama2Reference(tokenizer)
  }

  @Test(.enabled(if: spmFixturesExist, "Fixtures/tokenizer-spm* are missing"))
  func llama2TokenizerJSONMatchesReference() throws {
    let tokenizer = try Tokenizer(tokenizerJSON: try #require(spmFixture("tokenizer-spm-llama2", "json")))
    #expect(tokenizer.algorithm == .sentencePieceBPE(prefix: .always))
    #expect(tokenizer.addBOS && tokenizer.bosID == 1 && tokenizer.unkID == 0)
    try expectLlama2Reference(tokenizer)
  }

  /// What the GGUF and the Llama 2 `tokenizer.json` share: BOS first; Hugging Face's ids with
  /// special tokens parsed and sentencepiece's without; its decodings; and decode(encode(text))
  /// == text wherever Hugging Face's decoding gives the text back.
  private func expectLlama2Reference(_ tokenizer: Tokenizer) throws {
    let reference = try SPMReference.load()
    #expect(tokenizer.vocabularySize == reference.vocabSize)
    #expect(tokenizer.encode(reference.withBOS.text) == reference.withBOS.llama2)
    for item in reference.cases {
      let ids = Array(tokenizer.encode(item.text).dropFirst())
      #expect(ids == item.llama2, "\(item.text.debugDescription)")
      #expect(Array(tokenizer.encode(item.text, parseSpecial: false).dropFirst()) == item.sentencepiece)
      #expect(tokenizer.decode(item.llama2) == item.llama2Decoded, "\(item.text.debugDescription)")
      if item.llama2Decoded == item.text {
        #expect(tokenizer.decode(ids) == item.text, "\(item.text.debugDescription)")
      }
    }
  }

  @Test(
    .enabled(if: spmFixturesExist, "Fixtures/tokenizer-spm* are missing"),
    arguments: ["first", "always", "never"])
  func metaspaceTokenizerJSONMatchesReference(scheme: String) throws {
    let url = try #require(spmFixture("tokenizer-spm-metaspace", "json"))
    var json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
    json["pre_tokenizer"] = [
      "type": "Metaspace", "replacement": "▁", "prepend_scheme": scheme, "split": false,
    ]
    if scheme == "never", var decoder = json["decoder"] as? [String: Any],
      let steps = decoder["decoders"] as? [Any]
    {
      decoder["decoders"] = Array(steps.dropLast())
      json["decoder"] = decoder
    }
    let folder = try GGUFTestFolder()
    let file = try folder.file("tokenizer.json", Array(try JSONSerialization.data(withJSONObject: json)))
    let tokenizer = try Tokenizer(tokenizerJSON: URL(fileURLWithPath: file))
    let prefix: SpacePrefix = ["first": .firstUnlessSpace, "always": .unlessSpace, "never": .none][scheme]!
    #expect(tokenizer.algorithm == .sentencePieceBPE(prefix: prefix))
    let reference = try SPMReference.load()
    if scheme == "first" { #expect(tokenizer.encode(reference.withBOS.text) == reference.withBOS.metaspace) }
    for item in reference.cases {
      let (expected, decoded) = item.metaspace(scheme)
      let ids = Array(tokenizer.encode(item.text).dropFirst())
      #expect(ids == expected, "\(scheme) \(item.text.debugDescription)")
      #expect(tokenizer.decode(expected) == decoded, "\(scheme) \(item.text.debugDescription)")
      if decoded == item.text {
        #expect(tokenizer.decode(ids) == item.text, "\(scheme) \(item.text.debugDescription)")
      }
    }
  }

  /// The references disagree only on texts with a special token (sentencepiece never matches
  /// one) or, for the Metaspace layout, texts that start with a space or "▁" (see the suite's
  /// comment); everywhere else every layout gives sentencepiece's ids.
  @Test(.enabled(if: spmFixturesExist, "Fixtures/tokenizer-spm* are missing"))
  func referencesDisagreeOnlyWhereExpected() throws {
    for item in try SPMReference.load().cases {
      let hasSpecial = ["<s>", "</s>", "<unk>"].contains { item.text.contains($0) }
      let startsWithSpace = item.text.hasPrefix(" ") || item.text.hasPrefix("▁")
      #expect((item.llama2 == item.sentencepiece) == !hasSpecial, "\(item.text.debugDescription)")
      if !hasSpecial && !startsWithSpace {
        #expect(item.metaspace == item.llama2, "\(item.text.debugDescription)")
      }
    }
  }

  // MARK: The algorithm on small vocabularies

  @Test func highestScoreMergesFirst() throws {
    let tokenizer = try miniTokenizer(scores: ["▁a": -1, "ab": -2])
    #expect(pieces(tokenizer, "ab") == ["▁a", "b"])
    let reversed = try miniTokenizer(scores: ["▁a": -2, "ab": -1])
    #expect(pieces(reversed, "ab") == ["▁", "ab"])
    // Merges build on earlier ones, across the whole text.
    let chain = try miniTokenizer(scores: ["ab": -1, "▁ab": -2, "▁abab": -3])
    #expect(pieces(chain, "abab") == ["▁abab"])
    #expect(pieces(chain, "abab ab b") == ["▁abab", "▁ab", "▁", "b"])
  }

  @Test func equalScoresMergeLeftmostFirst() throws {
    let tokenizer = try miniTokenizer(scores: ["aa": -1])
    #expect(pieces(tokenizer, "aaa") == ["▁", "aa", "a"])
    #expect(pieces(tokenizer, "aaaaa") == ["▁", "aa", "aa", "a"])
    // "▁a" and "aa" tie: the pair further left wins.
    let tied = try miniTokenizer(scores: ["▁a": -1, "aa": -1])
    #expect(pieces(tied, "aa") == ["▁a", "a"])
  }

  @Test func charactersOutsideTheVocabularyFallBackToBytes() throws {
    let tokenizer = try miniTokenizer(scores: ["▁a": -1])
    let byte = { (value: UInt8) in try #require(tokenizer.id(of: String(format: "<0x%02X>", value))) }
    #expect(
      tokenizer.encode("aé\n") == [tokenizer.id(of: "▁a")!, try byte(0xC3), try byte(0xA9), try byte(0x0A)])
    #expect(tokenizer.decode(tokenizer.encode("aé\n")) == "aé\n")
    // Without byte tokens a character becomes <unk>, once for a run.
    let noBytes = try miniTokenizer(scores: ["▁a": -1], byteTokens: false)
    #expect(
      noBytes.encode("aéé b") == [noBytes.id(of: "▁a")!, 0, noBytes.id(of: "▁")!, noBytes.id(of: "b")!])
  }

  @Test func spacePrefixAndBOSFollowTheMetadata() throws {
    let plain = try miniTokenizer(scores: ["▁a": -1], addBOS: false, addSpacePrefix: false)
    #expect(pieces(plain, "a a") == ["a", "▁a"])
    #expect(plain.decode(plain.encode(" a")) == " a")
    let prefixed = try miniTokenizer(scores: ["▁a": -1], addBOS: true, addSpacePrefix: true)
    #expect(prefixed.encode("a").first == 1)
    #expect(prefixed.decode(prefixed.encode("a a"), skipSpecial: true) == "a a")
    #expect(prefixed.decode(prefixed.encode("a a")) == "<s> a a")
    #expect(prefixed.bytes(of: prefixed.id(of: "▁a")!) == Array(" a".utf8))
  }

  // MARK: Errors

  @Test(arguments: ["bert", "rwkv", "t5"])
  func unsupportedGGUFModelIsNamed(model: String) throws {
    var builder = GGUFBuilder()
    builder.metadata = [("tokenizer.ggml.model", .string(model)), ("tokenizer.ggml.tokens", .strings(["a"]))]
    let folder = try GGUFTestFolder()
    let path = try folder.file("model.gguf", builder.build())
    do {
      _ = try Tokenizer(gguf: GGUFFile(path: path))
      Issue.record("tokenizer.ggml.model '\(model)' was accepted")
    } catch let error as FormatError {
      let message = "\(error)"
      #expect(message.contains("'\(model)'") && message.contains("'gpt2'") && message.contains("'llama'"))
    }
  }

  @Test func llamaGGUFNeedsOneScorePerToken() throws {
    var builder = GGUFBuilder()
    builder.metadata = [
      ("tokenizer.ggml.model", .string("llama")),
      ("tokenizer.ggml.tokens", .strings(["<unk>", "<s>", "</s>"])),
      ("tokenizer.ggml.scores", .floats([0, 0])),
    ]
    let folder = try GGUFTestFolder()
    let path = try folder.file("model.gguf", builder.build())
    #expect(throws: FormatError.self) { _ = try Tokenizer(gguf: GGUFFile(path: path)) }
    #expect(throws: TokenizerError.scoreCountMismatch(tokens: 2, scores: 1)) {
      _ = try Tokenizer(
        tokens: ["a", "b"], scores: [0], tokenTypes: nil, bosID: nil, eosID: nil, unkID: nil, padID: nil,
        addBOS: false, addSpacePrefix: true)
    }
  }

  @Test(
    .enabled(if: spmFixturesExist, "Fixtures/tokenizer-spm* are missing"),
    arguments: [
      (
        "pre_tokenizer",
        #"{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": true}"#
      ),
      ("pre_tokenizer", #"{"type": "Whitespace"}"#),
      ("normalizer", #"{"type": "Lowercase"}"#),
      ("decoder", #"{"type": "ByteFallback"}"#),
      ("decoder", "null"),
      ("model.ignore_merges", "true"),
    ])
  func unsupportedByteFallbackLayoutsAreRefused(field: String, value: String) throws {
    let url = try #require(spmFixture("tokenizer-spm-metaspace", "json"))
    var json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
    let parsed = try JSONSerialization.jsonObject(with: Data(value.utf8), options: .fragmentsAllowed)
    if field == "model.ignore_merges", var model = json["model"] as? [String: Any] {
      model["ignore_merges"] = parsed
      json["model"] = model
    } else {
      json[field] = parsed
    }
    let folder = try GGUFTestFolder()
    let file = try folder.file("tokenizer.json", Array(try JSONSerialization.data(withJSONObject: json)))
    do {
      _ = try Tokenizer(tokenizerJSON: URL(fileURLWithPath: file))
      Issue.record("\(field) = \(value) was accepted")
    } catch TokenizerError.unsupportedComponent(let path, let reported, _, let supported) {
      #expect(path == file && reported == field && !supported.isEmpty)
    }
  }
}

// MARK: Helpers

private let spmFixturesExist =
  ["tokenizer-spm-ids", "tokenizer-spm-llama2", "tokenizer-spm-metaspace"].allSatisfy {
    spmFixture($0, "json") != nil
  } && spmFixture("tokenizer-spm", "gguf") != nil

private func spmFixture(_ name: String, _ ext: String) -> URL? {
  Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: ext)
}

/// `Fixtures/tokenizer-spm-ids.json`.
private struct SPMReference: Decodable {
  struct WithBOS: Decodable {
    var text: String
    var llama2: [Int32]
    var metaspace: [Int32]
  }
  struct Case: Decodable {
    var text: String
    var sentencepiece: [Int32]
    var llama2: [Int32]
    var metaspace: [Int32]
    var metaspaceAlways: [Int32]
    var metaspaceNever: [Int32]
    var llama2Decoded: String
    var metaspaceDecoded: String
    var metaspaceAlwaysDecoded: String
    var metaspaceNeverDecoded: String

    /// Ids and decoded text of the Metaspace layout with `prepend_scheme` `scheme`.
    func metaspace(_ scheme: String) -> ([Int32], String) {
      switch scheme {
      case "always": return (metaspaceAlways, metaspaceAlwaysDecoded)
      case "never": return (metaspaceNever, metaspaceNeverDecoded)
      default: return (metaspace, metaspaceDecoded)
      }
    }
  }
  var vocabSize: Int
  var withBOS: WithBOS
  var cases: [Case]

  /// The file's keys after `convertFromSnakeCase`.
  enum CodingKeys: String, CodingKey {
    case vocabSize
    case withBOS = "withBos"
    case cases
  }

  static func load() throws -> SPMReference {
    let decoder = JSONDecoder()
    decoder.keyDecodingStrategy = .convertFromSnakeCase
    let reference = try decoder.decode(
      SPMReference.self, from: Data(contentsOf: try #require(spmFixture("tokenizer-spm-ids", "json"))))
    #expect(reference.cases.count > 40)
    return reference
  }
}

/// A vocabulary of `<unk> <s> </s>`, the 256 byte tokens (unless `byteTokens` is false), the
/// characters "▁ a b" and the tokens of `scores` (merge results), in GGUF's types.
private func miniTokenizer(
  scores: KeyValuePairs<String, Float>, byteTokens: Bool = true, addBOS: Bool = false,
  addSpacePrefix: Bool = true
) throws -> Tokenizer {
  var tokens = ["<unk>", "<s>", "</s>"]
  var types: [Int32] = [2, 3, 3]
  if byteTokens {
    tokens += (0..<256).map { String(format: "<0x%02X>", $0) }
    types += Array(repeating: 6, count: 256)
  }
  tokens += ["▁", "a", "b"] + scores.map(\.key)
  types += Array(repeating: 1, count: 3 + scores.count)
  let values =
    Array(repeating: Float(0), count: tokens.count - 3 - scores.count) + [-100, -100, -100]
    + scores.map(\.value)
  return try Tokenizer(
    tokens: tokens, scores: values, tokenTypes: types, bosID: 1, eosID: 2, unkID: 0, padID: nil,
    addBOS: addBOS, addSpacePrefix: addSpacePrefix)
}

/// The vocabulary strings of encoded ids.
private func pieces(_ tokenizer: Tokenizer, _ text: String) -> [String] {
  tokenizer.encode(text).compactMap { tokenizer.token(of: $0) }
}
