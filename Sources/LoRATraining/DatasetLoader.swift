import Foundation
import LoRAFormats

/// How a JSON Lines dataset is turned into examples. Coded with snake_case keys
/// ("format", "max_seq_length", "train_on_prompt", "add_eos", "skip_bad_lines", "packing");
/// missing keys take the defaults below, and decoding fails when `maxSequenceLength < 2`.
public struct DatasetOptions: Sendable, Codable, Equatable {
  /// How each line is read; `.auto` tells it from the line's keys. Default `.auto`.
  public var format: DataFormat = .auto
  /// The longest example, in tokens (and the length of packed sequences). At least 2.
  /// Default 512.
  public var maxSequenceLength: Int = 512
  /// Train on prompt tokens too (prompt/completion and messages formats). Default false.
  public var trainOnPrompt: Bool = false
  /// Append the tokenizer's EOS (trained) to text and prompt/completion examples; messages
  /// already end each turn with "<|im_end|>" and input ids are taken as they are.
  /// Default true.
  public var addEOS: Bool = true
  /// Skip lines that cannot be read (counted in `DatasetStats.skippedLines`) instead of
  /// failing. Default false.
  public var skipBadLines: Bool = false
  /// Concatenate examples into sequences of exactly `maxSequenceLength` tokens. Default false.
  public var pack: Bool = false

  public init(
    format: DataFormat = .auto, maxSequenceLength: Int = 512, trainOnPrompt: Bool = false,
    addEOS: Bool = true, skipBadLines: Bool = false, pack: Bool = false
  ) {
    self.format = format
    self.maxSequenceLength = maxSequenceLength
    self.trainOnPrompt = trainOnPrompt
    self.addEOS = addEOS
    self.skipBadLines = skipBadLines
    self.pack = pack
  }

  /// Throws `DataError.invalidOption` when an option is out of range.
  public func validate() throws(DataError) {
    if maxSequenceLength < 2 {
      throw .invalidOption("max sequence length must be at least 2, got \(maxSequenceLength)")
    }
  }

  enum CodingKeys: String, CodingKey {
    case format
    case maxSequenceLength = "max_seq_length"
    case trainOnPrompt = "train_on_prompt"
    case addEOS = "add_eos"
    case skipBadLines = "skip_bad_lines"
    case pack = "packing"
  }

  public init(from decoder: any Decoder) throws {
    let container = try decoder.container(keyedBy: CodingKeys.self)
    let defaults = DatasetOptions()
    format = try container.decodeIfPresent(DataFormat.self, forKey: .format) ?? defaults.format
    maxSequenceLength =
      try container.decodeIfPresent(Int.self, forKey: .maxSequenceLength) ?? defaults.maxSequenceLength
    trainOnPrompt = try container.decodeIfPresent(Bool.self, forKey: .trainOnPrompt) ?? defaults.trainOnPrompt
    addEOS = try container.decodeIfPresent(Bool.self, forKey: .addEOS) ?? defaults.addEOS
    skipBadLines = try container.decodeIfPresent(Bool.self, forKey: .skipBadLines) ?? defaults.skipBadLines
    pack = try container.decodeIfPresent(Bool.self, forKey: .pack) ?? defaults.pack
    do throws(DataError) {
      try validate()
    } catch {
      throw DecodingError.dataCorruptedError(
        forKey: .maxSequenceLength, in: container, debugDescription: error.description)
    }
  }
}

/// What loading a dataset found.
public struct DatasetStats: Sendable, Codable, Equatable {
  /// Non-blank lines read.
  public var lines: Int
  /// Examples kept from those lines (before packing; after dropping).
  public var examples: Int
  /// Bad lines skipped (only with `skipBadLines`).
  public var skippedLines: Int
  /// Examples longer than the maximum sequence length, cut to it; those left with no trained
  /// token were dropped and are counted here too.
  public var truncated: Int
  /// Tokens in `Dataset.examples` (after truncation and packing).
  public var tokens: Int
  /// Trained tokens in `Dataset.examples` (after truncation and packing).
  public var trainedTokens: Int

  public init(lines: Int, examples: Int, skippedLines: Int, truncated: Int, tokens: Int, trainedTokens: Int) {
    self.lines = lines
    self.examples = examples
    self.skippedLines = skippedLines
    self.truncated = truncated
    self.tokens = tokens
    self.trainedTokens = trainedTokens
  }
}

/// Tokenized training examples and how they were read.
public struct Dataset: Sendable {
  /// The examples (packed sequences when `DatasetOptions.pack`), in file order.
  public var examples: [Example]
  public var stats: DatasetStats

  public init(examples: [Example], stats: DatasetStats) {
    self.examples = examples
    self.stats = stats
  }
}

/// Reads JSON Lines datasets into tokenized examples with exact loss masks.
public enum DatasetLoader {
  /// Loads a JSON Lines file: one JSON object per non-blank line, in one of these formats
  /// (`options.format`, or told per line from the keys when `.auto`):
  ///
  /// - `{"text": "..."}`: every token trained, then EOS (trained) when `addEOS`.
  /// - `{"prompt": "...", "completion": "..."}`: prompt and completion tokenized separately
  ///   and concatenated, then EOS when `addEOS`; the completion and EOS are trained (the
  ///   prompt too when `trainOnPrompt`).
  /// - `{"messages": [{"role": "system" | "user" | "assistant", "content": "..."}]}`:
  ///   rendered as ChatML (`ChatTemplate.chatML`) and tokenized piece by piece at the edges of
  ///   the assistant turns, so that exactly each assistant content and its "<|im_end|>" are
  ///   trained (everything when `trainOnPrompt`). At least one assistant message is needed.
  /// - `{"input_ids": [...], "labels": [...]}`: pre-tokenized ids, all trained, or as the
  ///   optional Hugging Face labels say (same length; -100 not trained, otherwise the id).
  ///
  /// Every format also accepts an "id" and a "meta" key, which are ignored; any other key is
  /// an error. Special tokens written in the text (e.g. "<|im_end|>") are parsed, as Hugging
  /// Face does. A tokenizer that adds a BOS puts it once at the start of each example,
  /// untrained. The first token of every example is never trained (nothing predicts it).
  ///
  /// Examples longer than `maxSequenceLength` keep their first `maxSequenceLength` tokens and
  /// are counted in `stats.truncated`; one left with no trained token is dropped (and still
  /// counted there). A line whose example has no trained token to begin with is a bad line.
  /// With `pack`, the examples are then concatenated in file order and cut into sequences of
  /// exactly `maxSequenceLength` tokens (the last may be shorter; one with no trained token is
  /// dropped); flags are kept, except that the first token of each sequence is not trained.
  /// Packed examples attend to each other.
  ///
  /// - Throws: `DataError.unreadable` for a missing or unreadable file;
  ///   `DataError.badLine` (1-based line number) for a line that is not valid JSON, not an
  ///   object, has an unknown or missing key, a value of the wrong type, an unknown role, no
  ///   assistant message, ids outside the vocabulary or labels that do not match them, or
  ///   nothing to train on, unless `skipBadLines`; `DataError.empty` when no example is left;
  ///   `DataError.invalidOption` for `maxSequenceLength < 2`, or when `addEOS` is needed and
  ///   the tokenizer has no EOS.
  public static func load(path: String, tokenizer: Tokenizer, options: DatasetOptions) throws(DataError)
    -> Dataset
  {
    try options.validate()
    let bytes = try readFile(path)
    let reader = LineReader(tokenizer: tokenizer, options: options)

    var examples: [Example] = []
    var lines = 0
    var skippedLines = 0
    var truncated = 0
    var lineNumber = 0
    var start = 0
    while start <= bytes.count {
      lineNumber += 1
      let end = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) ?? bytes.count
      defer { start = end + 1 }
      var line = bytes[start..<end]
      if lineNumber == 1 && line.starts(with: [0xEF, 0xBB, 0xBF]) { line = line.dropFirst(3) }
      guard line.contains(where: { !isJSONWhitespace($0) }) else { continue }
      lines += 1

      var example: Example
      do throws(LineError) {
        example = try reader.example(from: line)
      } catch {
        switch error {
        case .bad(let message):
          if options.skipBadLines {
            skippedLines += 1
            continue
          }
          throw .badLine(file: path, line: lineNumber, message: message)
        case .option(let message):
          throw .invalidOption(message)
        }
      }

      if example.tokens.count > options.maxSequenceLength {
        truncated += 1
        example.tokens.removeSubrange(options.maxSequenceLength...)
        example.trained.removeSubrange(options.maxSequenceLength...)
        if !example.trained.contains(true) { continue }
      }
      examples.append(example)
    }

    guard !examples.isEmpty else {
      throw .empty(
        file: path,
        message: "no examples (\(lines) lines read, \(skippedLines) skipped, "
          + "\(truncated) truncated)")
    }
    let exampleCount = examples.count
    if options.pack { examples = pack(examples, length: options.maxSequenceLength) }
    let stats = DatasetStats(
      lines: lines, examples: exampleCount, skippedLines: skippedLines, truncated: truncated,
      tokens: examples.reduce(0) { $0 + $1.tokens.count },
      trainedTokens: examples.reduce(0) { $0 + $1.trainedCount })
    return Dataset(examples: examples, stats: stats)
  }

  /// Concatenates examples and cuts them into sequences of `length` tokens (the last may be
  /// shorter), untraining each sequence's first token and dropping sequences with no target.
  static func pack(_ examples: [Example], length: Int) -> [Example] {
    var packed: [Example] = []
    var tokens: [Int32] = []
    var trained: [Bool] = []
    tokens.reserveCapacity(length)
    trained.reserveCapacity(length)
    func flush() {
      let sequence = Example(tokens: tokens, trained: trained)
      if sequence.trainedCount > 0 { packed.append(sequence) }
      tokens.removeAll(keepingCapacity: true)
      trained.removeAll(keepingCapacity: true)
    }
    for example in examples {
      var position = 0
      while position < example.tokens.count {
        let take = min(length - tokens.count, example.tokens.count - position)
        tokens += example.tokens[position..<(position + take)]
        trained += example.trained[position..<(position + take)]
        position += take
        if tokens.count == length { flush() }
      }
    }
    if !tokens.isEmpty { flush() }
    return packed
  }

  /// The bytes of the file at `path`.
  private static func readFile(_ path: String) throws(DataError) -> [UInt8] {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
      throw .unreadable(file: path, reason: "no such file")
    }
    guard !isDirectory.boolValue else { throw .unreadable(file: path, reason: "is a directory") }
    do {
      return [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    } catch {
      throw .unreadable(file: path, reason: error.localizedDescription)
    }
  }

  private static func isJSONWhitespace(_ byte: UInt8) -> Bool {
    byte == 0x20 || byte == 0x09 || byte == 0x0D || byte == 0x0A
  }
}

/// Why one line gave no example: a bad line (skippable) or an option that cannot work.
private enum LineError: Error {
  case bad(String)
  case option(String)
}

/// Turns one line into an example.
private struct LineReader {
  let tokenizer: Tokenizer
  let options: DatasetOptions
  let decoder = JSONDecoder()

  /// Keys every format accepts and ignores.
  static let ignoredKeys: Set<String> = ["id", "meta"]
  static let roles = ["system", "user", "assistant"]

  /// The keys a format requires, then those it allows.
  static func keys(of format: DataFormat) -> (required: [String], optional: [String]) {
    switch format {
    case .auto: return ([], [])
    case .text: return (["text"], [])
    case .promptCompletion: return (["prompt", "completion"], [])
    case .messages: return (["messages"], [])
    case .inputIDs: return (["input_ids"], ["labels"])
    }
  }

  func example(from line: ArraySlice<UInt8>) throws(LineError) -> Example {
    // The common case first: decoding an object directly saves the failed guesses of
    // `JSONLineValue.init(from:)`.
    let data = Data(line)
    let object: [String: JSONLineValue]
    if let decoded = try? decoder.decode([String: JSONLineValue].self, from: data) {
      object = decoded
    } else if let value = try? decoder.decode(JSONLineValue.self, from: data) {
      throw .bad("expected a JSON object, found \(value.kind)")
    } else {
      throw .bad("invalid JSON")
    }
    let format = try options.format == .auto ? detect(object) : options.format
    try checkKeys(object, format: format)

    let example: Example
    switch format {
    case .auto, .text:
      var builder = SequenceBuilder(tokenizer: tokenizer)
      builder.append(try string(object, "text"), trained: true)
      try appendEOS(&builder)
      example = builder.example
    case .promptCompletion:
      var builder = SequenceBuilder(tokenizer: tokenizer)
      builder.append(try string(object, "prompt"), trained: options.trainOnPrompt)
      builder.append(try string(object, "completion"), trained: true)
      try appendEOS(&builder)
      example = builder.example
    case .messages:
      example = try messagesExample(object["messages"]!)
    case .inputIDs:
      example = try inputIDsExample(object)
    }
    guard example.trainedCount > 0 else { throw .bad("no token to train on") }
    return example
  }

  /// The format a line's keys show.
  private func detect(_ object: [String: JSONLineValue]) throws(LineError) -> DataFormat {
    if object["messages"] != nil { return .messages }
    if object["input_ids"] != nil { return .inputIDs }
    if object["prompt"] != nil || object["completion"] != nil { return .promptCompletion }
    if object["text"] != nil { return .text }
    let keys = object.keys.filter { !Self.ignoredKeys.contains($0) }.sorted()
    let found = keys.isEmpty ? "no key" : "keys " + quoted(keys)
    throw .bad(
      "cannot tell the format: expected \"text\", \"prompt\" and \"completion\", \"messages\" "
        + "or \"input_ids\", found \(found)")
  }

  private func checkKeys(_ object: [String: JSONLineValue], format: DataFormat) throws(LineError) {
    let (required, optional) = Self.keys(of: format)
    for key in object.keys.sorted()
    where !required.contains(key) && !optional.contains(key) && !Self.ignoredKeys.contains(key) {
      let allowed = quoted(required + optional + Self.ignoredKeys.sorted())
      throw .bad("unknown key \"\(key)\" for format \(format.rawValue) (allowed: \(allowed))")
    }
    for key in required where object[key] == nil {
      throw .bad("missing key \"\(key)\" for format \(format.rawValue)")
    }
  }

  private func string(_ object: [String: JSONLineValue], _ key: String) throws(LineError) -> String {
    guard case .string(let text) = object[key]! else {
      throw .bad("key \"\(key)\" must be a string, found \(object[key]!.kind)")
    }
    return text
  }

  private func appendEOS(_ builder: inout SequenceBuilder) throws(LineError) {
    guard options.addEOS else { return }
    guard let eos = tokenizer.eosID else {
      throw .option("add EOS is on but the tokenizer has no end-of-sequence token")
    }
    builder.append(id: Int32(eos), trained: true)
  }

  /// ChatML, tokenized in pieces cut at the edges of the assistant spans.
  private func messagesExample(_ value: JSONLineValue) throws(LineError) -> Example {
    guard case .array(let items) = value else {
      throw .bad("key \"messages\" must be an array, found \(value.kind)")
    }
    var messages: [ChatMessage] = []
    for (index, item) in items.enumerated() {
      let name = "messages[\(index)]"
      guard case .object(let fields) = item else {
        throw .bad("\(name) must be an object, found \(item.kind)")
      }
      for key in fields.keys.sorted() where key != "role" && key != "content" {
        throw .bad("\(name): unknown key \"\(key)\" (allowed: \"role\", \"content\")")
      }
      var strings: [String] = []
      for key in ["role", "content"] {
        guard let field = fields[key] else { throw .bad("\(name): missing key \"\(key)\"") }
        guard case .string(let text) = field else {
          throw .bad("\(name).\(key) must be a string, found \(field.kind)")
        }
        strings.append(text)
      }
      guard Self.roles.contains(strings[0]) else {
        throw .bad(
          "\(name): unknown role \"\(strings[0])\" (expected \"system\", \"user\" or \"assistant\")")
      }
      messages.append(ChatMessage(role: strings[0], content: strings[1]))
    }
    guard messages.contains(where: { $0.role == "assistant" }) else {
      throw .bad("no assistant message in \"messages\"")
    }

    let (text, spans) = ChatTemplate.chatMLWithAssistantSpans(messages)
    let utf8 = Array(text.utf8)
    var builder = SequenceBuilder(tokenizer: tokenizer)
    var cursor = 0
    for span in spans {
      builder.append(
        String(decoding: utf8[cursor..<span.lowerBound], as: UTF8.self), trained: options.trainOnPrompt)
      builder.append(String(decoding: utf8[span], as: UTF8.self), trained: true)
      cursor = span.upperBound
    }
    builder.append(String(decoding: utf8[cursor...], as: UTF8.self), trained: options.trainOnPrompt)
    return builder.example
  }

  /// Pre-tokenized ids, with optional Hugging Face labels.
  private func inputIDsExample(_ object: [String: JSONLineValue]) throws(LineError) -> Example {
    let ids = try integers(object["input_ids"]!, key: "input_ids")
    guard !ids.isEmpty else { throw .bad("key \"input_ids\" is empty") }
    let vocabularySize = tokenizer.vocabularySize
    for (index, id) in ids.enumerated() where id < 0 || id >= Int64(vocabularySize) {
      throw .bad("input_ids[\(index)] is \(id), outside the vocabulary (0..<\(vocabularySize))")
    }
    var trained = [Bool](repeating: true, count: ids.count)
    if let labelValue = object["labels"] {
      let labels = try integers(labelValue, key: "labels")
      guard labels.count == ids.count else {
        throw .bad("labels has \(labels.count) entries but input_ids has \(ids.count)")
      }
      for index in labels.indices {
        if labels[index] == -100 {
          trained[index] = false
        } else if labels[index] != ids[index] {
          throw .bad(
            "labels[\(index)] is \(labels[index]); expected -100 or input_ids[\(index)] (\(ids[index]))")
        }
      }
    }
    return Example(tokens: ids.map { Int32($0) }, trained: trained)
  }

  private func integers(_ value: JSONLineValue, key: String) throws(LineError) -> [Int64] {
    guard case .array(let items) = value else {
      throw .bad("key \"\(key)\" must be an array of integers, found \(value.kind)")
    }
    var result: [Int64] = []
    result.reserveCapacity(items.count)
    for (index, item) in items.enumerated() {
      guard case .integer(let number) = item else {
        throw .bad("\(key)[\(index)] must be an integer, found \(item.kind)")
      }
      result.append(number)
    }
    return result
  }

  private func quoted(_ names: [String]) -> String {
    names.map { "\"\($0)\"" }.joined(separator: ", ")
  }
}

/// Tokens and flags of one example, appended piece by piece.
private struct SequenceBuilder {
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

/// Any JSON value of a dataset line; integers are told apart from other numbers.
private enum JSONLineValue: Decodable {
  case null
  case bool(Bool)
  case integer(Int64)
  case number(Double)
  case string(String)
  case array([JSONLineValue])
  case object([String: JSONLineValue])

  init(from decoder: any Decoder) throws {
    let container = try decoder.singleValueContainer()
    // Integers first: pre-tokenized lines hold thousands of them.
    if container.decodeNil() {
      self = .null
    } else if let value = try? container.decode(Int64.self) {
      self = .integer(value)
    } else if let value = try? container.decode(String.self) {
      self = .string(value)
    } else if let value = try? container.decode(Bool.self) {
      self = .bool(value)
    } else if let value = try? container.decode(Double.self) {
      self = .number(value)
    } else if let value = try? container.decode([JSONLineValue].self) {
      self = .array(value)
    } else {
      self = .object(try container.decode([String: JSONLineValue].self))
    }
  }

  /// "a string", "an integer", … for messages.
  var kind: String {
    switch self {
    case .null: return "null"
    case .bool: return "a boolean"
    case .integer: return "an integer"
    case .number: return "a number"
    case .string: return "a string"
    case .array: return "an array"
    case .object: return "an object"
    }
  }
}
