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
