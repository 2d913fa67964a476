import LoRAModel

/// One generation request, in tokens: the HTTP layer renders chat templates, tokenizes and
/// matches stop strings; the engine sees ids only.
public struct CompletionRequest: Sendable {
  /// An adapter's name, the base's name, or "auto" (the router picks).
  public var model: String
  /// [T] token ids.
  public var prompt: [Int32]
  public var maxTokens: Int
  /// 0 is greedy.
  public var temperature: Float
  public var topP: Float
  public var seed: UInt64
  /// Generation ends after any of these (the token itself is reported).
  public var stopTokens: Set<Int32>

  public init(
    model: String, prompt: [Int32], maxTokens: Int, temperature: Float = 0, topP: Float = 1, seed: UInt64 = 0,
    stopTokens: Set<Int32> = []
  ) {
    self.model = model
    self.prompt = prompt
    self.maxTokens = maxTokens
    self.temperature = temperature
    self.topP = topP
    self.seed = seed
    self.stopTokens = stopTokens
  }

  /// Checks what needs no engine state: a prompt, its length with `maxTokens` within
  /// `context` positions, the sampling fields, and every id below `vocabularySize`.
  public func check(context: Int, vocabularySize: Int) throws(ServeError) {
    guard !prompt.isEmpty else { throw .emptyPrompt }
    guard maxTokens >= 1 else {
      throw .invalidField(field: "max_tokens", reason: "must be at least 1")
    }
    // As a difference: `max_tokens` comes from the client and may be near Int.max.
    guard maxTokens <= context - prompt.count else {
      throw .promptTooLong(prompt: prompt.count, maxTokens: maxTokens, context: context)
    }
    guard temperature >= 0 && temperature.isFinite else {
      throw .invalidField(field: "temperature", reason: "must be 0 or more")
    }
    guard topP > 0 && topP <= 1 else {
      throw .invalidField(field: "top_p", reason: "must be in (0, 1]")
    }
    if let bad = prompt.first(where: { $0 < 0 || Int($0) >= vocabularySize }) {
      throw .invalidField(
        field: "prompt", reason: "token id \(bad) is outside the vocabulary of \(vocabularySize)")
    }
  }
}

/// Why a generation ended, with OpenAI's names.
public enum FinishReason: String, Sendable, Codable {
  /// A stop token (or, in the HTTP layer, a stop string).
  case stop
  /// max_tokens reached.
  case length
  /// The client went away or cancelled.
  case cancelled
}

/// What a request's stream reports, in order: `routed` once, `token` for each generated
/// token, then `finished` once.
public enum CompletionEvent: Sendable, Equatable {
  /// The adapter that serves the request (nil: the base alone); for "auto", the router's pick.
  case routed(adapter: String?)
  case token(Int32)
  case finished(FinishReason, promptTokens: Int, completionTokens: Int)
}
