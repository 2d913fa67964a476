import LoRAFormats

/// One line of preference data (DPO): a prompt with a chosen and a rejected response, each
/// as an example of the prompt followed by that response, only the response trained.
public struct PreferencePair: Sendable, Equatable, Codable {
  public var chosen: Example
  public var rejected: Example

  public init(chosen: Example, rejected: Example) {
    self.chosen = chosen
    self.rejected = rejected
  }
}

extension LineReader {
  /// The keys of a preference line, in TRL's format.
  static let preferenceKeys = ["prompt", "chosen", "rejected"]

  /// A preference line in TRL's format, `{"prompt", "chosen", "rejected"}`: three strings
  /// (the prompt untrained, then the response and EOS trained), or a prompt of chat messages
  /// with responses of assistant messages (rendered in the chat layout with the prompt; only
  /// the response's turns trained).
  func preferencePair(from line: ArraySlice<UInt8>) throws(LineError) -> PreferencePair {
    let object = try object(from: line)
    for key in object.keys.sorted()
    where !Self.preferenceKeys.contains(key) && !Self.ignoredKeys.contains(key) {
      throw .bad(
        "unknown key \"\(key)\" for preference data (allowed: \(quoted(Self.preferenceKeys + Self.ignoredKeys.sorted())))"
      )
    }
    for key in Self.preferenceKeys where object[key] == nil {
      throw .bad("missing key \"\(key)\": a preference line has \"prompt\", \"chosen\" and \"rejected\"")
    }
    let chosen: Example
    let rejected: Example
    if case .array = object["prompt"]! {
      let prompt = try chatMessages(object["prompt"]!, key: "prompt")
      chosen = try conversationalResponse(prompt, object["chosen"]!, key: "chosen")
      rejected = try conversationalResponse(prompt, object["rejected"]!, key: "rejected")
    } else {
      let prompt = try string(object, "prompt")
      chosen = try promptCompletion(prompt, try string(object, "chosen"), trainPrompt: false)
      rejected = try promptCompletion(prompt, try string(object, "rejected"), trainPrompt: false)
    }
    guard chosen.tokens != rejected.tokens else {
      throw .bad("\"chosen\" and \"rejected\" are the same: a pair needs two different responses")
    }
    return PreferencePair(chosen: chosen, rejected: rejected)
  }

  /// The prompt's messages and the response's (assistant messages only), rendered together.
  private func conversationalResponse(_ prompt: [ChatMessage], _ value: JSONLineValue, key: String)
    throws(LineError) -> Example
  {
    guard case .array = value else {
      throw .bad("key \"\(key)\" must be a list of assistant messages when \"prompt\" is a list of messages")
    }
    let response = try chatMessages(value, key: key)
    guard !response.isEmpty else { throw .bad("key \"\(key)\" holds no message") }
    for (i, message) in response.enumerated() where message.role != "assistant" {
      throw .bad("\(key)[\(i)]: a response is assistant messages, found role \"\(message.role)\"")
    }
    return try chatExample(prompt + response, trainedTurns: response.count)
  }
}
