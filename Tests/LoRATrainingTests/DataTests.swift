import Foundation
import LoRAFormats
import Testing

@testable import LoRATraining

// MARK: Formats and masks

@Suite struct DatasetFormatTests {
  @Test func textTrainsEveryTokenThenEOS() throws {
    let tokenizer = try smolLM2()
    let folder = try DataTestFolder()
    let path = try folder.write(#"{"text": "The quick brown fox."}"#)
    let dataset = try DatasetLoader.load(path: path, tokenizer: tokenizer, options: DatasetOptions())
    let ids = tokenizer.encode("The quick brown fox.")
    #expect(
      dataset.examples == [
        Example(tokens: ids + [2], trained: [false] + Array(repeating: true, count: ids.count))
      ])
    #expect(
      dataset.stats
        == DatasetStats(
          lines: 1, examples: 1, skippedLines: 0, truncated: 0, tokens: ids.count + 1,
          trainedTokens: ids.count))

    let plain = try DatasetLoader.load(
      path: path, tokenizer: tokenizer, options: DatasetOptions(addEOS: false))
    #expect(plain.examples.map(\.tokens) == [ids])
    #expect(plain.examples[0].trained == [false] + Array(repeating: true, count: ids.count - 1))
  }

  @Test func promptCompletionTrainsTheCompletionAndEOS() throws {
    let tokenizer = try smolLM2()
    let folder = try DataTestFolder()
    let path = try folder.write(#"{"prompt": "Q: What is 2+2?\nA:", "completion": " It is 4."}"#)
    let example = try #require(
      try DatasetLoader.load(path: path, tokenizer: tokenizer, options: DatasetOptions()).examples.first)
    let prompt = tokenizer.encode("Q: What is 2+2?\nA:")
    let completion = tokenizer.encode(" It is 4.")
    #expect(example.tokens == prompt + completion + [2])
    #expect(
      example.trained
        == Array(repeating: false, count: prompt.count) + Array(repeating: true, count: completion.count + 1))
    #expect(trainedRuns(example, tokenizer) == [" It is 4.<|im_end|>"])

    let all = try #require(
      try DatasetLoader.load(path: path, tokenizer: tokenizer, options: DatasetOptions(trainOnPrompt: true))
        .examples.first)
    #expect(all.tokens == example.tokens)
    #expect(all.trained == [false] + Array(repeating: true, count: example.tokens.count - 1))
  }

  @Test func messagesTrainEachAssistantContentAndItsEnd() throws {
    let tokenizer = try smolLM2()
    let folder = try DataTestFolder()
    let messages = [
      ChatMessage(role: "system", content: "Be brief."),
      ChatMessage(role: "user", content: "Hello?"),
      ChatMessage(role: "assistant", content: "Hi there!"),
      ChatMessage(role: "user", content: "Grüße, 日本語"),
      ChatMessage(role: "assistant", content: "Bye\nnow."),
    ]
    let line = String(decoding: try JSONEncoder().encode(["messages": messages]), as: UTF8.self)
    let path = try folder.write(line)
    let example = try #require(
      try DatasetLoader.load(path: path, tokenizer: tokenizer, options: DatasetOptions()).examples.first)
    #expect(tokenizer.decode(example.tokens) == ChatTemplate.chatML(messages, addGenerationPrompt: false))
    #expect(trainedRuns(example, tokenizer) == ["Hi there!<|im_end|>", "Bye\nnow.<|im_end|>"])
    // The "<|im_start|>assistant\n" header right before each run is not trained.
    let assistant = tokenizer.encode("<|im_start|>assistant\n")
    let firstTrained = try #require(example.trained.firstIndex(of: true))
    #expect(Array(example.tokens[(firstTrained - assistant.count)..<firstTrained]) == assistant)

    let all = try #require(
      try DatasetLoader.load(path: path, tokenizer: tokenizer, options: DatasetOptions(trainOnPrompt: true))
        .examples.first)
    #expect(all.tokens == example.tokens)
    #expect(all.trainedCount == example.tokens.count - 1)
  }

  @Test func inputIDsUseLabelsOrTrainEverything() throws {
    let folder = try DataTestFolder()
    let path = try folder.write(
      #"{"input_ids": [5, 6, 7, 8], "labels": [-100, -100, 7, 8]}"#,
      #"{"input_ids": [9, 10, 11]}"#)
    let dataset = try DatasetLoader.load(path: path, tokenizer: try smolLM2(), options: DatasetOptions())
    #expect(
      dataset.examples == [
        Example(tokens: [5, 6, 7, 8], trained: [false, false, true, true]),
        Example(tokens: [9, 10, 11], trained: [false, true, true]),
      ])
    #expect(dataset.stats.trainedTokens == 4)
  }

  @Test func autoDetectsEachLineAndIgnoresIDAndMeta() throws {
    let tokenizer = try smolLM2()
    let folder = try DataTestFolder()
    let lines = [
      #"{"id": 1, "text": "plain"}"#,
      #"{"prompt": "a", "completion": "b", "meta": {"source": "x", "tags": [1, true, null]}}"#,
      #"{"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "v"}]}"#,
      #"{"input_ids": [1, 2, 3], "id": "row-4"}"#,
    ]
    let path = try folder.write(lines)
    let auto = try DatasetLoader.load(path: path, tokenizer: tokenizer, options: DatasetOptions())
    #expect(auto.stats.lines == 4 && auto.stats.examples == 4)
    let formats: [DataFormat] = [.text, .promptCompletion, .messages, .inputIDs]
    for (line, format) in zip(lines, formats) {
      let single = try folder.write(line)
      let explicit = try DatasetLoader.load(
        path: single, tokenizer: tokenizer, options: DatasetOptions(format: format))
      #expect(explicit.examples.count == 1)
      #expect(auto.examples.contains(explicit.examples[0]), "\(format)")
    }
    #expect(auto.examples[1].tokens == tokenizer.encode("a") + tokenizer.encode("b") + [2])
  }

  /// A tokenizer that adds a BOS keeps it once, first and untrained, however many pieces;
  /// a conversation has only the BOS its chat template writes (ChatML writes none), as
  /// Hugging Face's `apply_chat_template` encodes it.
  @Test func bosIsAddedOnce() throws {
    let tokenizer = try byteTokenizer()
    let folder = try DataTestFolder()
    let path = try folder.write(
      #"{"prompt": "ab", "completion": "c"}"#,
      #"{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}"#)
    let dataset = try DatasetLoader.load(path: path, tokenizer: tokenizer, options: DatasetOptions())
    let bos = Int32(tokenizer.bosID!)
    let eos = Int32(tokenizer.eosID!)
    #expect(dataset.examples[0].tokens == [bos, 97, 98, 99, eos])
    #expect(dataset.examples[0].trained == [false, false, false, true, true])
    let chat = dataset.examples[1]
    #expect(!chat.tokens.contains(bos))
    #expect(
      tokenizer.decode(chat.tokens)
        == "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\ny<|im_end|>\n")
    #expect(trainedRuns(chat, tokenizer) == ["y<|im_end|>"])
  }
}

// MARK: Errors

@Suite struct DatasetErrorTests {
  /// The error loading `lines` throws.
  private func loadError(
    _ lines: [String], _ options: DatasetOptions = DatasetOptions()
  ) throws -> (error: DataError?, path: String) {
    let folder = try DataTestFolder()
    let path = try folder.write(lines)
    let tokenizer = try smolLM2()
    do {
      _ = try DatasetLoader.load(path: path, tokenizer: tokenizer, options: options)
      return (nil, path)
    } catch {
      return (error, path)
    }
  }

  private func expectBadLine(
    _ line: String, _ message: String, _ options: DatasetOptions = DatasetOptions(),
    sourceLocation: SourceLocation = #_sourceLocation
  ) throws {
    let (error, path) = try loadError([#"{"text": "fine"}"#, line], options)
    #expect(error == .badLine(file: path, line: 2, message: message), sourceLocation: sourceLocation)
  }

  @Test func malformedJSONNamesFileAndLine() throws {
    let (error, path) = try loadError([#"{"text": "one"}"#, "", "  ", #"{"text": "three"#])
    #expect(error == .badLine(file: path, line: 4, message: "invalid JSON"))
    #expect(error?.description == "\(path):4: invalid JSON")
  }

  @Test func shapesAndKeys() throws {
    try expectBadLine("[1, 2]", "expected a JSON object, found an array")
    try expectBadLine(#""text""#, "expected a JSON object, found a string")
    try expectBadLine(
      #"{"text": "a", "extra": 1}"#, #"unknown key "extra" for format text (allowed: "text", "id", "meta")"#)
    try expectBadLine(
      #"{"input_ids": [1], "label": [1]}"#,
      #"unknown key "label" for format input_ids (allowed: "input_ids", "labels", "id", "meta")"#)
    try expectBadLine(#"{"prompt": "a"}"#, #"missing key "completion" for format prompt_completion"#)
    try expectBadLine(
      #"{"foo": 1, "id": 2}"#,
      #"cannot tell the format: expected "text", "prompt" and "completion", "messages" or "input_ids", found keys "foo""#
    )
    try expectBadLine(
      "{}",
      #"cannot tell the format: expected "text", "prompt" and "completion", "messages" or "input_ids", found no key"#
    )
  }

  @Test func explicitFormatRequiresItsKeys() throws {
    let text = DatasetOptions(format: .text)
    let (error, path) = try loadError([#"{"prompt": "a", "completion": "b"}"#], text)
    #expect(
      error
        == .badLine(
          file: path, line: 1,
          message: #"unknown key "completion" for format text (allowed: "text", "id", "meta")"#))
    let messages = DatasetOptions(format: .messages)
    let (missing, missingPath) = try loadError([#"{"id": 3}"#], messages)
    #expect(
      missing == .badLine(file: missingPath, line: 1, message: #"missing key "messages" for format messages"#)
    )
  }

  @Test func wrongTypes() throws {
    try expectBadLine(#"{"text": 5}"#, #"key "text" must be a string, found an integer"#)
    try expectBadLine(
      #"{"prompt": "a", "completion": null}"#, #"key "completion" must be a string, found null"#)
    try expectBadLine(#"{"messages": "hi"}"#, #"key "messages" must be an array, found a string"#)
    try expectBadLine(#"{"messages": [true]}"#, "messages[0] must be an object, found a boolean")
    try expectBadLine(
      #"{"messages": [{"role": "user", "content": null}]}"#,
      "messages[0].content must be a string, found null")
    try expectBadLine(
      #"{"messages": [{"role": "user"}, {"role": "assistant", "content": "x"}]}"#,
      #"messages[0]: missing key "content""#)
    try expectBadLine(
      #"{"messages": [{"role": "user", "content": "x", "name": "bob"}]}"#,
      #"messages[0]: unknown key "name" (allowed: "role", "content")"#)
    try expectBadLine(
      #"{"input_ids": {"a": 1}}"#, #"key "input_ids" must be an array of integers, found an object"#)
    try expectBadLine(#"{"input_ids": [1, 2.5]}"#, "input_ids[1] must be an integer, found a number")
    try expectBadLine(
      #"{"input_ids": [1, 2], "labels": [1, "2"]}"#, "labels[1] must be an integer, found a string")
  }

  @Test func rolesAndAssistant() throws {
    try expectBadLine(
      #"{"messages": [{"role": "user", "content": "x"}, {"role": "tool", "content": "y"}]}"#,
      #"messages[1]: unknown role "tool" (expected "system", "user" or "assistant")"#)
    try expectBadLine(
      #"{"messages": [{"role": "user", "content": "x"}]}"#, #"no assistant message in "messages""#)
  }

  @Test func idsAndLabels() throws {
    try expectBadLine(
      #"{"input_ids": [1, 49152]}"#, "input_ids[1] is 49152, outside the vocabulary (0..<49152)")
    try expectBadLine(#"{"input_ids": [-1]}"#, "input_ids[0] is -1, outside the vocabulary (0..<49152)")
    try expectBadLine(#"{"input_ids": []}"#, #"key "input_ids" is empty"#)
    try expectBadLine(
      #"{"input_ids": [1, 2, 3], "labels": [1, 2]}"#, "labels has 2 entries but input_ids has 3")
    try expectBadLine(
      #"{"input_ids": [1, 2, 3], "labels": [-100, 7, 3]}"#,
      "labels[1] is 7; expected -100 or input_ids[1] (2)")
    try expectBadLine(#"{"input_ids": [1, 2], "labels": [1, -100]}"#, "no token to train on")
  }

  @Test func emptyMissingAndOptions() throws {
    let (empty, emptyPath) = try loadError(["", "   "])
    #expect(empty == .empty(file: emptyPath, message: "no examples (0 lines read, 0 skipped, 0 truncated)"))

    let folder = try DataTestFolder()
    let missing = folder.url.appendingPathComponent("absent.jsonl").path
    #expect(throws: DataError.unreadable(file: missing, reason: "no such file")) {
      try DatasetLoader.load(path: missing, tokenizer: try smolLM2(), options: DatasetOptions())
    }
    #expect(throws: DataError.unreadable(file: folder.url.path, reason: "is a directory")) {
      try DatasetLoader.load(path: folder.url.path, tokenizer: try smolLM2(), options: DatasetOptions())
    }
    let (short, _) = try loadError([#"{"text": "a"}"#], DatasetOptions(maxSequenceLength: 1))
    #expect(short == .invalidOption("max sequence length must be at least 2, got 1"))
    let text = try folder.write(#"{"text": "a"}"#)
    #expect(throws: DataError.invalidOption("add EOS is on but the tokenizer has no end-of-sequence token")) {
      try DatasetLoader.load(path: text, tokenizer: try byteTokenizer(eos: false), options: DatasetOptions())
    }
  }

  @Test func skipBadLinesCountsThem() throws {
    let lines = [
      #"{"text": "one"}"#, "not json", #"{"text": 1}"#, "", #"{"text": "two"}"#,
      #"{"messages": [{"role": "user", "content": "x"}]}"#,
    ]
    let options = DatasetOptions(skipBadLines: true)
    let folder = try DataTestFolder()
    let dataset = try DatasetLoader.load(
      path: try folder.write(lines), tokenizer: try smolLM2(), options: options)
    #expect(dataset.examples.count == 2)
    #expect(dataset.stats.lines == 5 && dataset.stats.skippedLines == 3 && dataset.stats.examples == 2)

    let (error, path) = try loadError(["nope", "[]"], options)
    #expect(error == .empty(file: path, message: "no examples (2 lines read, 2 skipped, 0 truncated)"))
  }

  @Test func optionsDecodeWithDefaultsAndValidate() throws {
    let decoded = try JSONDecoder().decode(
      DatasetOptions.self, from: Data(#"{"max_seq_length": 128, "packing": true, "format": "messages"}"#.utf8)
    )
    #expect(decoded == DatasetOptions(format: .messages, maxSequenceLength: 128, pack: true))
    #expect(throws: DecodingError.self) {
      try JSONDecoder().decode(DatasetOptions.self, from: Data(#"{"max_seq_length": 1}"#.utf8))
    }
    let encoded = try JSONEncoder().encode(decoded)
    #expect(try JSONDecoder().decode(DatasetOptions.self, from: encoded) == decoded)
  }
}

// MARK: Helpers

/// A temporary folder for dataset files, removed when released.
final class DataTestFolder {
  let url: URL
  private var fileCount = 0

  init() throws {
    url = FileManager.default.temporaryDirectory.appendingPathComponent(
      "lora-data-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
  }

  deinit {
    try? FileManager.default.removeItem(at: url)
  }

  /// Writes `lines` (joined by newlines, with a final newline) to a new file; returns its path.
  func write(_ lines: [String]) throws -> String {
    fileCount += 1
    let file = url.appendingPathComponent("data-\(fileCount).jsonl")
    try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: file)
    return file.path
  }

  func write(_ lines: String...) throws -> String {
    try write(lines)
  }
}

/// The decoded text of each maximal run of trained tokens.
func trainedRuns(_ example: Example, _ tokenizer: Tokenizer) -> [String] {
  var runs: [[Int32]] = []
  var previous = false
  for (token, trained) in zip(example.tokens, example.trained) {
    if trained {
      if !previous { runs.append([]) }
      runs[runs.count - 1].append(token)
    }
    previous = trained
  }
  return runs.map { tokenizer.decode($0) }
}

/// The SmolLM2 tokenizer fixture with SmolLM2-Instruct's `tokenizer_config.json` beside it
/// (EOS and PAD "<|im_end|>"), loaded once.
private let sharedSmolLM2 = Result(catching: { () throws -> Tokenizer in
  let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("../LoRAFormatsTests/Fixtures/tokenizer-smollm2.json").standardizedFileURL
  let folder = try DataTestFolder()
  let link = folder.url.appendingPathComponent("tokenizer.json")
  try FileManager.default.createSymbolicLink(at: link, withDestinationURL: fixture)
  try Data(#"{"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "<|im_end|>"}"#.utf8)
    .write(to: folder.url.appendingPathComponent("tokenizer_config.json"))
  return try Tokenizer(tokenizerJSON: link)
})

func smolLM2() throws -> Tokenizer {
  let tokenizer = try sharedSmolLM2.get()
  #expect(tokenizer.eosID == 2)
  return tokenizer
}

/// A byte-level tokenizer without merges: 256 byte tokens, then "<s>" (BOS, added by encode),
/// "</s>" (EOS) and the ChatML markers.
private func byteTokenizer(eos: Bool = true) throws -> Tokenizer {
  var bytes: [String] = []
  var next: UInt32 = 256
  for byte in 0..<256 {
    switch byte {
    case 33...126, 161...172, 174...255: bytes.append(String(Unicode.Scalar(UInt32(byte))!))
    default:
      bytes.append(String(Unicode.Scalar(next)!))
      next += 1
    }
  }
  let specials = ["<s>", "</s>", ChatTemplate.imStart, ChatTemplate.imEnd]
  // Byte tokens start at id 0 so that "a" is 97.
  return try Tokenizer(
    tokens: bytes + specials, tokenTypes: Array(repeating: 1, count: 256) + Array(repeating: 3, count: 4),
    merges: [], bosID: 256, eosID: eos ? 257 : nil, padID: nil, preTokenizer: .gpt2, addBOS: true)
}
