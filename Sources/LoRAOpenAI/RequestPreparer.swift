import Foundation
import LoRAFormats
import LoRAServe

/// Turns OpenAI request bodies into the engine's token requests: tokenizes prompts, renders
/// chat messages in the model's layout and checks every field, answering each fault with a
/// 400 that names it. Holds no engine, so it runs (and is fuzzed) without a model or HTTP.
public struct RequestPreparer: Sendable {
  public let tokenizer: Tokenizer
  /// The layout chat requests are rendered in; nil when the model's template is not one
  /// `ChatFormat` knows (chat is then refused).
  public let chatFormat: ChatFormat?
  /// The served context in tokens: a chat request's default `max_tokens` is what is left of it.
  public let contextLength: Int
  /// Generation ends at these in plain completions (eos) and in chat (eos and the layout's
  /// end of turn, e.g. `<|im_end|>`).
  public let completionStopTokens: Set<Int32>
  public let chatStopTokens: Set<Int32>

  /// Most stop strings per request (OpenAI's limit).
  public static let maxStopStrings = 4
  /// Roles a chat message may have.
  static let roles: Set<String> = ["system", "developer", "user", "assistant", "tool"]

  /// - chatFormat: the layout to render chat in, e.g. `ChatFormat.detect(template:tokenizer:)`.
  public init(tokenizer: Tokenizer, chatFormat: ChatFormat?, contextLength: Int) {
    self.tokenizer = tokenizer
    self.chatFormat = chatFormat
    self.contextLength = contextLength
    var stops: Set<Int32> = []
    if let eos = tokenizer.eosID { stops.insert(Int32(eos)) }
    completionStopTokens = stops
    for marker in chatFormat?.endOfTurn ?? [] {
      if let end = tokenizer.id(of: marker) { stops.insert(end) }
    }
    chatStopTokens = stops
  }

  /// A request ready for the engine, with what the HTTP layer keeps for itself.
  public struct Prepared: Sendable {
    public var request: CompletionRequest
    public var stopStrings: [String]
    public var stream: Bool
    public var includeUsage: Bool
  }

  /// Checks a completion body and tokenizes its prompt.
  public func prepare(_ body: CompletionBody) throws(APIError) -> Prepared {
    if body.echo == true {
      throw APIError(
        status: 400, message: "'echo': echoing the prompt is not supported", param: "echo",
        code: "unsupported")
    }
    let prompt: [Int32]
    switch body.prompt {
    case .text(let text): prompt = tokenizer.encode(text)
    case .tokens(let ids): prompt = ids
    }
    return try prepared(
      model: body.model, prompt: prompt, maxTokens: body.maxTokens ?? 16, temperature: body.temperature,
      topP: body.topP, seed: body.seed, n: body.n, stop: body.stop,
      stopTokens: body.ignoreEos == true ? [] : completionStopTokens,
      stream: body.stream, streamOptions: body.streamOptions)
  }

  /// Checks a chat body and renders its messages in the model's chat layout.
  public func prepare(_ body: ChatCompletionBody) throws(APIError) -> Prepared {
    let prompt = try Self.chatPrompt(body.messages, format: chatFormat, tokenizer: tokenizer)
    // Default: the rest of the context (at least 1, so a too-long prompt says so).
    let maxTokens = body.maxTokens ?? body.maxCompletionTokens ?? max(1, contextLength - prompt.count)
    return try prepared(
      model: body.model, prompt: prompt, maxTokens: maxTokens, temperature: body.temperature, topP: body.topP,
      seed: body.seed, n: body.n, stop: body.stop,
      stopTokens: body.ignoreEos == true ? [] : chatStopTokens, stream: body.stream,
      streamOptions: body.streamOptions)
  }

  /// The prompt ids of a chat request: its messages checked ("developer" read as "system"),
  /// rendered in `format` with the generation prompt and encoded with no automatic BOS.
  /// - Throws: `APIError` 400 naming the message when the model has no layout the server
  ///   renders, there are no messages, a role is unknown, or the layout cannot write them.
  public static func chatPrompt(
    _ bodyMessages: [ChatMessageBody], format: ChatFormat?, tokenizer: Tokenizer
  ) throws(APIError) -> [Int32] {
    guard let format else {
      throw APIError(
        status: 400,
        message:
          "the served model's chat template is not one this server renders (\(ChatFormat.names)); "
          + "use /v1/completions instead",
        code: "unsupported")
    }
    guard !bodyMessages.isEmpty else {
      throw APIError(
        status: 400, message: "'messages': must hold at least one message", param: "messages",
        code: "invalid_value")
    }
    for (i, message) in bodyMessages.enumerated() where !roles.contains(message.role) {
      throw APIError(
        status: 400,
        message:
          "'messages[\(i)].role': '\(message.role)' is not one of \(roles.sorted().joined(separator: ", "))",
        param: "messages[\(i)].role", code: "invalid_value")
    }
    let messages = bodyMessages.map {
      ChatMessage(role: $0.role == "developer" ? "system" : $0.role, content: $0.content)
    }
    do throws(ChatFormatError) {
      let text = try format.render(messages, addGenerationPrompt: true, for: tokenizer).text
      return tokenizer.encode(text, withBOS: false)
    } catch {
      throw APIError(
        status: 400, message: "'messages': \(error.description)", param: "messages", code: "invalid_value")
    }
  }

  private func prepared(
    model: String, prompt: [Int32], maxTokens: Int, temperature: Double?, topP: Double?, seed: Int64?,
    n: Int?,
    stop: StopField?, stopTokens: Set<Int32>, stream: Bool?, streamOptions: StreamOptions?
  ) throws(APIError) -> Prepared {
    if let n, n != 1 {
      throw APIError(
        status: 400, message: "'n': only 1 choice per request is served", param: "n", code: "unsupported")
    }
    guard maxTokens >= 1 else {
      throw APIError(
        status: 400, message: "'max_tokens': must be at least 1", param: "max_tokens", code: "invalid_value")
    }
    let temperature = temperature ?? 1
    guard temperature >= 0 && temperature <= 2 && temperature.isFinite else {
      throw APIError(
        status: 400, message: "'temperature': must be between 0 and 2", param: "temperature",
        code: "invalid_value")
    }
    let topP = topP ?? 1
    guard topP > 0 && topP <= 1 else {
      throw APIError(
        status: 400, message: "'top_p': must be in (0, 1]", param: "top_p", code: "invalid_value")
    }
    let stopStrings = stop?.strings ?? []
    guard stopStrings.count <= Self.maxStopStrings else {
      throw APIError(
        status: 400, message: "'stop': at most \(Self.maxStopStrings) stop strings, got \(stopStrings.count)",
        param: "stop", code: "invalid_value")
    }
    if stopStrings.contains(where: \.isEmpty) {
      throw APIError(
        status: 400, message: "'stop': stop strings must not be empty", param: "stop", code: "invalid_value")
    }
    // No seed: a fresh one per request, as OpenAI samples differently each time.
    let seed =
      seed.map { UInt64(bitPattern: $0) } ?? (temperature == 0 ? 0 : UInt64.random(in: 0...UInt64.max))
    let request = CompletionRequest(
      model: model, prompt: prompt, maxTokens: maxTokens, temperature: Float(temperature), topP: Float(topP),
      seed: seed, stopTokens: stopTokens)
    return Prepared(
      request: request, stopStrings: stopStrings, stream: stream ?? false,
      includeUsage: streamOptions?.includeUsage ?? false)
  }
}
