import Foundation
import LoRAFormats

/// Why one line gave no example: a bad line (skippable) or an option that cannot work.
enum LineError: Error {
  case bad(String)
  case option(String)
}

/// Turns one line into an example.
struct LineReader {
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

  /// The line as a JSON object.
  func object(from line: ArraySlice<UInt8>) throws(LineError) -> [String: JSONLineValue] {
    // The common case first: decoding an object directly saves the failed guesses of
    // `JSONLineValue.init(from:)`.
    let data = Data(line)
    if let decoded = try? decoder.decode([String: JSONLineValue].self, from: data) {
      return decoded
    } else if let value = try? decoder.decode(JSONLineValue.self, from: data) {
      throw .bad("expected a JSON object, found \(value.kind)")
    } else {
      throw .bad("invalid JSON")
    }
  }

  func example(from line: ArraySlice<UInt8>) throws(LineError) -> Example {
    let object = try object(from: line)
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
      example = try promptCompletion(
        try string(object, "prompt"), try string(object, "completion"), trainPrompt: options.trainOnPrompt)
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

  func string(_ object: [String: JSONLineValue], _ key: String) throws(LineError) -> String {
    guard case .string(let text) = object[key]! else {
      throw .bad("key \"\(key)\" must be a string, found \(object[key]!.kind)")
    }
    return text
  }

  /// The prompt (trained when `trainPrompt`) then the completion and EOS, trained.
  func promptCompletion(_ prompt: String, _ completion: String, trainPrompt: Bool) throws(LineError)
    -> Example
  {
    var builder = SequenceBuilder(tokenizer: tokenizer)
    builder.append(prompt, trained: trainPrompt)
    builder.append(completion, trained: true)
    try appendEOS(&builder)
    return builder.example
  }

  private func appendEOS(_ builder: inout SequenceBuilder) throws(LineError) {
    guard options.addEOS else { return }
    guard let eos = tokenizer.eosID else {
      throw .option("add EOS is on but the tokenizer has no end-of-sequence token")
    }
    builder.append(id: Int32(eos), trained: true)
  }

  /// A conversation in the model's chat layout, with what the assistant says trained.
  private func messagesExample(_ value: JSONLineValue) throws(LineError) -> Example {
    let messages = try chatMessages(value, key: "messages")
    guard messages.contains(where: { $0.role == "assistant" }) else {
      throw .bad("no assistant message in \"messages\"")
    }
    return try chatExample(messages, trainedTurns: nil)
  }

  /// The messages of `value` (the value of `key`): objects of a known role and a content.
  func chatMessages(_ value: JSONLineValue, key: String) throws(LineError) -> [ChatMessage] {
    guard case .array(let items) = value else {
      throw .bad("key \"\(key)\" must be an array, found \(value.kind)")
    }
    var messages: [ChatMessage] = []
    for (index, item) in items.enumerated() {
      let name = "\(key)[\(index)]"
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
    return messages
  }

  /// `messages` rendered in the chat layout as one example: every assistant turn trained
  /// (`trainedTurns` nil), or only the last `trainedTurns` of them.
  func chatExample(_ messages: [ChatMessage], trainedTurns: Int?) throws(LineError) -> Example {
    guard let format = options.chatFormat ?? ChatFormat.detect(template: nil, tokenizer: tokenizer) else {
      throw .option(
        "the model's chat template is not one this tool renders (\(ChatFormat.names)); "
          + "set the dataset's chat_format to the one the model was trained with")
    }
    let rendered: (text: String, assistantByteRanges: [Range<Int>])
    do throws(ChatFormatError) {
      rendered = try format.render(messages, addGenerationPrompt: false, for: tokenizer)
    } catch {
      throw .bad(error.description)
    }
    let spans =
      trainedTurns.map { Array(rendered.assistantByteRanges.suffix($0)) } ?? rendered.assistantByteRanges
    return ChatTokens.example(
      text: rendered.text, assistantByteRanges: spans, tokenizer: tokenizer,
      trainOnPrompt: options.trainOnPrompt && trainedTurns == nil)
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

  func quoted(_ names: [String]) -> String {
    names.map { "\"\($0)\"" }.joined(separator: ", ")
  }
}
