import Foundation

/// The chat layouts the tool renders, each equal to the Jinja template its models ship
/// (checked against Hugging Face's `apply_chat_template` by `scripts/make_chat_fixtures.py`).
/// A model's layout is told from its template (`detect`); the text is then encoded with
/// special tokens parsed and no automatic BOS, as `apply_chat_template` does.
public enum ChatFormat: String, Sendable, Codable, CaseIterable {
  /// "<|im_start|>{role}\n{content}<|im_end|>\n" (SmolLM2, Qwen2).
  case chatML = "chatml"
  /// "<s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s>" (Llama 2 chat).
  case llama2
  /// "<s>[INST] {user} [/INST]{assistant}</s>" with no system role (Mistral Instruct v0.1).
  case mistral
  /// "<|user|>\n{content}</s>\n" per turn (Zephyr, TinyLlama chat).
  case zephyr
  /// "<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>" after BOS (Llama 3).
  case llama3

  /// The layout a model's template shows, or, with no template, ChatML when the vocabulary
  /// has "<|im_start|>"; nil when neither tells.
  public static func detect(template: String?, tokenizer: Tokenizer) -> ChatFormat? {
    guard let template else { return tokenizer.id(of: ChatTemplate.imStart) != nil ? .chatML : nil }
    return detect(template: template)
  }

  /// The layout a Jinja chat template writes, from the markers it holds; nil for others.
  public static func detect(template: String) -> ChatFormat? {
    if template.contains(ChatTemplate.imStart) { return .chatML }
    if template.contains("<|start_header_id|>") { return .llama3 }
    if template.contains("<<SYS>>") { return .llama2 }
    if template.contains("[INST]") { return .mistral }
    if template.contains("<|assistant|>") && template.contains("<|user|>") { return .zephyr }
    return nil
  }

  /// The supported layouts, for messages: "chatml, llama2, …".
  public static var names: String { allCases.map(\.rawValue).joined(separator: ", ") }

  /// The token strings (beyond the tokenizer's EOS) that end an assistant turn.
  public var endOfTurn: [String] {
    switch self {
    case .chatML: return [ChatTemplate.imEnd]
    case .llama3: return ["<|eot_id|>"]
    case .llama2, .mistral, .zephyr: return []
    }
  }

  /// The text of `messages` and the UTF-8 byte ranges of what each assistant message says
  /// (its content and the marker closing it), in message order. `bos` and `eos` are the
  /// tokenizer's token strings ("" when it has none). With `addGenerationPrompt`, the text
  /// ends where the assistant's answer begins.
  ///
  /// - Throws: `ChatFormatError` where the template raises: roles that do not alternate
  ///   user/assistant (llama2, mistral), a system message in mistral, or a role the layout
  ///   does not write.
  public func render(
    _ messages: [ChatMessage], addGenerationPrompt: Bool, bos: String, eos: String
  ) throws(ChatFormatError) -> (text: String, assistantByteRanges: [Range<Int>]) {
    var text = ""
    var ranges: [Range<Int>] = []
    func assistant(_ content: String, closedBy marker: String) {
      let start = text.utf8.count
      text += content + marker
      ranges.append(start..<text.utf8.count)
    }
    switch self {
    case .chatML:
      (text, ranges) = ChatTemplate.chatMLWithAssistantSpans(messages)
      if addGenerationPrompt { text += "\(ChatTemplate.imStart)assistant\n" }
    case .llama2, .mistral:
      var turns = messages[...]
      var system: String?
      if self == .llama2, let first = turns.first, first.role == "system" {
        system = first.content
        turns = turns.dropFirst()
      }
      if self == .mistral { text += bos }
      for (index, message) in turns.enumerated() {
        let expected = index % 2 == 0 ? "user" : "assistant"
        let position = messages.count - turns.count + index
        guard message.role == expected else {
          if self == .mistral && !["user", "assistant"].contains(message.role) {
            throw .unsupportedRole(index: position, role: message.role, format: self)
          }
          throw .rolesMustAlternate(index: position, role: message.role, expected: expected)
        }
        if self == .mistral {
          if expected == "user" {
            text += "[INST] \(message.content) [/INST]"
          } else {
            assistant(message.content, closedBy: eos)
          }
          continue
        }
        var content = message.content
        if index == 0, let system { content = "<<SYS>>\n\(system)\n<</SYS>>\n\n" + content }
        if expected == "user" {
          text += "\(bos)[INST] \(Self.strip(content)) [/INST]"
        } else {
          text += " "
          assistant(Self.strip(content), closedBy: " \(eos)")
        }
      }
    case .zephyr:
      for (index, message) in messages.enumerated() {
        guard ["system", "user", "assistant"].contains(message.role) else {
          throw .unsupportedRole(index: index, role: message.role, format: self)
        }
        text += "<|\(message.role)|>\n"
        if message.role == "assistant" {
          assistant(message.content, closedBy: eos)
        } else {
          text += message.content + eos
        }
        text += "\n"
      }
      if addGenerationPrompt && !messages.isEmpty { text += "<|assistant|>\n" }
    case .llama3:
      text += bos
      for message in messages {
        text += "<|start_header_id|>\(message.role)<|end_header_id|>\n\n"
        if message.role == "assistant" {
          assistant(Self.strip(message.content), closedBy: "<|eot_id|>")
        } else {
          text += Self.strip(message.content) + "<|eot_id|>"
        }
      }
      if addGenerationPrompt { text += "<|start_header_id|>assistant<|end_header_id|>\n\n" }
    }
    return (text, ranges)
  }

  /// `render(_:addGenerationPrompt:bos:eos:)` with `tokenizer`'s BOS and EOS strings.
  public func render(
    _ messages: [ChatMessage], addGenerationPrompt: Bool, for tokenizer: Tokenizer
  ) throws(ChatFormatError) -> (text: String, assistantByteRanges: [Range<Int>]) {
    let special = { (id: Int?) in id.flatMap { tokenizer.token(of: Int32($0)) } ?? "" }
    return try render(
      messages, addGenerationPrompt: addGenerationPrompt, bos: special(tokenizer.bosID),
      eos: special(tokenizer.eosID))
  }

  /// Jinja's `trim` and Python's `str.strip()`: leading and trailing white space removed.
  static func strip(_ text: String) -> String {
    text.trimmingCharacters(in: .whitespacesAndNewlines)
  }
}

/// Why a conversation cannot be rendered in a layout (the template would raise).
public enum ChatFormatError: Error, Equatable, CustomStringConvertible {
  /// Message `index` has `role` where the layout needs `expected`.
  case rolesMustAlternate(index: Int, role: String, expected: String)
  /// Message `index` has a role the layout does not write.
  case unsupportedRole(index: Int, role: String, format: ChatFormat)

  public var description: String {
    switch self {
    case .rolesMustAlternate(let index, let role, let expected):
      return
        "messages[\(index)]: role \"\(role)\" where \"\(expected)\" is needed "
        + "(this model's chat template needs user/assistant/user/… after an optional system message)"
    case .unsupportedRole(let index, let role, let format):
      let allowed =
        format == .mistral ? "\"user\" and \"assistant\"" : "\"system\", \"user\" and \"assistant\""
      return
        "messages[\(index)]: role \"\(role)\" is not written by the \(format.rawValue) chat template (it takes \(allowed))"
    }
  }
}
