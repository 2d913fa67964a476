/// One turn of a conversation, with Hugging Face / OpenAI key names ("role", "content").
public struct ChatMessage: Codable, Sendable, Equatable {
  /// "system", "user", "assistant" or any other role the template writes verbatim.
  public var role: String
  public var content: String

  public init(role: String, content: String) {
    self.role = role
    self.content = content
  }
}

/// Renders conversations into the text a chat model was trained on.
public enum ChatTemplate {
  /// The marker that opens a ChatML turn.
  public static let imStart = "<|im_start|>"
  /// The marker that closes a ChatML turn.
  public static let imEnd = "<|im_end|>"

  /// ChatML: "<|im_start|>{role}\n{content}<|im_end|>\n" per message, then
  /// "<|im_start|>assistant\n" when `addGenerationPrompt`.
  public static func chatML(_ messages: [ChatMessage], addGenerationPrompt: Bool) -> String {
    var text = chatMLWithAssistantSpans(messages).text
    if addGenerationPrompt { text += "\(imStart)assistant\n" }
    return text
  }

  /// ChatML as `chatML(_:addGenerationPrompt: false)`, with the UTF-8 byte ranges of each
  /// assistant message's content plus its closing "<|im_end|>" (not the newline after it),
  /// in message order, for masking the loss to what the assistant said.
  public static func chatMLWithAssistantSpans(
    _ messages: [ChatMessage]
  ) -> (text: String, assistantByteRanges: [Range<Int>]) {
    var text = ""
    var ranges: [Range<Int>] = []
    for message in messages {
      text += "\(imStart)\(message.role)\n"
      let start = text.utf8.count
      text += message.content
      text += imEnd
      if message.role == "assistant" { ranges.append(start..<text.utf8.count) }
      text += "\n"
    }
    return (text, ranges)
  }
}
