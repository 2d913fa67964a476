import Foundation
import Testing

@testable import LoRAFormats

/// Tokenizers loaded from tokenizer.json files (against Hugging Face tokenizers' own
/// results), and the ChatML template.
@Suite struct TokenizerFileTests {
  // MARK: tokenizer.json

  @Test func loadsDigitsSequenceWithArrayMerges() throws {
    let folder = try ScratchFolder()
    let url = try folder.write(
      "tokenizer.json",
      tokenizerJSON(
        preTokenizer:
          #"{"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true},"#
          + #" {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}]}"#,
        merges: #"[["h", "e"], ["Ġ", "1"]]"#))
    let tokenizer = try Tokenizer(tokenizerJSON: url)
    #expect(tokenizer.preTokenizer == .gpt2Digits)
    #expect(!tokenizer.addBOS && tokenizer.bosID == nil)
    #expect(tokenizer.encode("he 12") == [256, 32, 49, 50])
    #expect(tokenizer.encode("<|im_end|>") == [258])
    #expect(tokenizer.decode([258, 256], skipSpecial: true) == "he")
  }

  @Test func loadsLlama3SplitWithTemplateBOSAndStringMerges() throws {
    let folder = try ScratchFolder()
    let pattern =
      #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"#
    let url = try folder.write(
      "tokenizer.json",
      tokenizerJSON(
        preTokenizer: #"{"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": ""#
          + pattern
          + #""}, "behavior": "Isolated", "invert": false}, {"type": "ByteLevel", "use_regex": false}]}"#,
        merges: #"["h e", "Ġ 1"]"#,
        postProcessor:
          #"{"type": "Sequence", "processors": [{"type": "ByteLevel"}, {"type": "TemplateProcessing","#
          + #" "single": [{"SpecialToken": {"id": "<|im_start|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],"#
          + #" "special_tokens": {"<|im_start|>": {"id": "<|im_start|>", "ids": [259], "tokens": ["<|im_start|>"]}}}]}"#
      ))
    _ = try folder.write(
      "tokenizer_config.json", #"{"eos_token": {"content": "<|im_end|>"}, "pad_token": "<|im_end|>"}"#)
    let tokenizer = try Tokenizer(tokenizerJSON: url)
    #expect(tokenizer.preTokenizer == .llama3)
    #expect(tokenizer.addBOS && tokenizer.bosID == 259)
    #expect(tokenizer.eosID == 258 && tokenizer.padID == 258)
    #expect(tokenizer.encode("he 1234") == [259, 256, 32, 49, 50, 51, 52])
  }

  @Test func rejectsWhatItCannotReproduce() throws {
    let folder = try ScratchFolder()
    let wordPiece = try folder.write(
      "wordpiece.json", #"{"model": {"type": "WordPiece", "vocab": {"a": 0}}}"#)
    #expect(throws: TokenizerError.unsupportedModel(path: wordPiece.path, type: "WordPiece")) {
      _ = try Tokenizer(tokenizerJSON: wordPiece)
    }
    let split = try folder.write(
      "split.json",
      tokenizerJSON(
        preTokenizer:
          #"{"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "\\w+"},"#
          + #" "behavior": "Isolated", "invert": false}, {"type": "ByteLevel", "use_regex": false}]}"#,
        merges: "[]"))
    #expect(throws: TokenizerError.unknownSplitPattern(path: split.path, pattern: #"\w+"#)) {
      _ = try Tokenizer(tokenizerJSON: split)
    }
    let metaspace = try folder.write(
      "metaspace.json", tokenizerJSON(preTokenizer: #"{"type": "Metaspace"}"#, merges: "[]"))
    do {
      _ = try Tokenizer(tokenizerJSON: metaspace)
      Issue.record("a Metaspace pre-tokenizer was accepted")
    } catch let error as TokenizerError {
      #expect(error.description.contains("metaspace.json") && error.description.contains("Metaspace"))
    }
    let missing = folder.url.appendingPathComponent("absent.json")
    #expect(throws: TokenizerError.self) { _ = try Tokenizer(tokenizerJSON: missing) }
    let broken = try folder.write("broken.json", #"{"model": {"type": "BPE", "vocab": [1, 2]}}"#)
    do {
      _ = try Tokenizer(tokenizerJSON: broken)
      Issue.record("a list vocabulary was accepted")
    } catch let error as TokenizerError {
      #expect(error.description.contains("broken.json") && error.description.contains("model.vocab"))
    }
  }

  // MARK: ChatML

  @Test func chatMLRendersTurnsAndPrompt() {
    let messages = [
      ChatMessage(role: "system", content: "Be brief."), ChatMessage(role: "user", content: "Hi"),
    ]
    #expect(
      ChatTemplate.chatML(messages, addGenerationPrompt: true)
        == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    #expect(
      ChatTemplate.chatML(messages, addGenerationPrompt: false)
        == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n")
  }

  @Test func assistantSpansCoverContentAndClosingMarker() {
    let messages = [
      ChatMessage(role: "user", content: "Grüße?"), ChatMessage(role: "assistant", content: "日本語 ok"),
      ChatMessage(role: "user", content: "again"), ChatMessage(role: "assistant", content: ""),
    ]
    let (text, spans) = ChatTemplate.chatMLWithAssistantSpans(messages)
    #expect(text == ChatTemplate.chatML(messages, addGenerationPrompt: false))
    let bytes = Array(text.utf8)
    #expect(spans.map { String(decoding: bytes[$0], as: UTF8.self) } == ["日本語 ok<|im_end|>", "<|im_end|>"])
  }

  // MARK: SmolLM2 reference (fixture made by Hugging Face tokenizers)

  @Test(
    .enabled(
      if: fixtureURL("tokenizer-smollm2") != nil && fixtureURL("tokenizer-ids") != nil,
      "Fixtures/tokenizer-smollm2.json or Fixtures/tokenizer-ids.json is missing"))
  func matchesHuggingFaceOnSmolLM2() throws {
    let url = try #require(fixtureURL("tokenizer-smollm2"))
    let tokenizer = try Tokenizer(tokenizerJSON: url)
    // The fixture was exported from the GGUF by transformers, which writes a plain ByteLevel
    // pre-tokenizer instead of SmolLM2's Digits + ByteLevel. The vocabulary has no token with
    // a digit besides the single digits, so on the fixture texts the ids agree with the
    // digit-splitting "smollm" mode checked below; they differ where 2+ spaces precede a digit.
    #expect(tokenizer.preTokenizer == .gpt2)
    #expect(!tokenizer.addBOS)
    #expect(tokenizer.vocabularySize == 49_152)
    #expect(tokenizer.id(of: "<|im_end|>") == 2)
    #expect(
      tokenizer.encode("The quick brown fox jumps over the lazy dog.") == [
        504, 2365, 6354, 16438, 27003, 690, 260, 23790, 2767, 30,
      ])
    #expect(
      tokenizer.encode("Grüße, naïve café — 日本語") == [
        27302, 7170, 34878, 85, 28, 15486, 46494, 37366, 1841, 17097, 241, 115, 40993, 179, 120, 248,
      ])
    let cases = try referenceCases()
    #expect(cases.count > 10)
    for reference in cases {
      #expect(tokenizer.encode(reference.text) == reference.ids, "\(reference.text.debugDescription)")
    }
    for text in roundTripTexts + cases.map(\.text) {
      #expect(Array(tokenizer.decode(tokenizer.encode(text)).utf8) == Array(text.utf8))
    }
  }

  /// The same vocabulary through the GGUF-style initializer with llama.cpp's "smollm" mode.
  @Test(
    .enabled(
      if: fixtureURL("tokenizer-smollm2") != nil && fixtureURL("tokenizer-ids") != nil,
      "Fixtures/tokenizer-smollm2.json or Fixtures/tokenizer-ids.json is missing"))
  func ggufStyleSmolLM2MatchesHuggingFace() throws {
    let data = try Data(contentsOf: try #require(fixtureURL("tokenizer-smollm2")))
    let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    let model = try #require(json["model"] as? [String: Any])
    let vocab = try #require(model["vocab"] as? [String: Int])
    let merges = try #require(model["merges"] as? [[String]]).map { $0.joined(separator: " ") }
    let added = try #require(json["added_tokens"] as? [[String: Any]])
    var tokens = [String](repeating: "", count: vocab.count)
    for (token, id) in vocab { tokens[id] = token }
    var types = [Int32](repeating: 1, count: tokens.count)
    for token in added { types[try #require(token["id"] as? Int)] = 3 }
    let tokenizer = try Tokenizer(
      tokens: tokens, tokenTypes: types, merges: merges, bosID: 1, eosID: 2, padID: nil,
      preTokenizer: try #require(PreTokenizer(ggufName: "smollm")), addBOS: false)
    for reference in try referenceCases() {
      #expect(tokenizer.encode(reference.text) == reference.ids, "\(reference.text.debugDescription)")
    }
  }
}

// MARK: Helpers

private func fixtureURL(_ name: String) -> URL? {
  Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: "json")
}

/// One entry of `Fixtures/tokenizer-ids.json`: a text and Hugging Face's ids for it.
private struct ReferenceCase: Decodable {
  var text: String
  var ids: [Int32]
}

private func referenceCases() throws -> [ReferenceCase] {
  let data = try Data(contentsOf: try #require(fixtureURL("tokenizer-ids")))
  return try JSONDecoder().decode([ReferenceCase].self, from: data)
}

/// A minimal `tokenizer.json`: the 256 byte characters (ids 0–255), "he" (256) and "Ġ1" (257),
/// then added tokens "<|im_end|>" (258) and "<|im_start|>" (259).
private func tokenizerJSON(preTokenizer: String, merges: String, postProcessor: String = "null") -> String {
  var vocab = byteCharacters.enumerated().map { id, token in
    "\(jsonString(token)): \(id)"
  }
  vocab += [#""he": 256"#, #""Ġ1": 257"#]
  return """
    {"version": "1.0", "added_tokens": [
      {"id": 258, "content": "<|im_end|>", "special": true},
      {"id": 259, "content": "<|im_start|>", "special": true}],
     "normalizer": null, "pre_tokenizer": \(preTokenizer), "post_processor": \(postProcessor),
     "decoder": {"type": "ByteLevel"},
     "model": {"type": "BPE", "vocab": {\(vocab.joined(separator: ", "))}, "merges": \(merges)}}
    """
}

private func jsonString(_ text: String) -> String {
  String(decoding: try! JSONEncoder().encode(text), as: UTF8.self)
}

/// A folder under the system temporary directory, removed when released.
private final class ScratchFolder {
  let url: URL

  init() throws {
    url = FileManager.default.temporaryDirectory.appendingPathComponent(
      "tokenizer-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
  }

  func write(_ name: String, _ contents: String) throws -> URL {
    let file = url.appendingPathComponent(name)
    try Data(contents.utf8).write(to: file)
    return file
  }

  deinit { try? FileManager.default.removeItem(at: url) }
}

/// Results gathered from concurrent closures.
