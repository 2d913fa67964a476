import Foundation

/// `POST /v1/completions`: OpenAI's legacy completion request (fields not listed are ignored).
public struct CompletionBody: Decodable, Sendable, Equatable {
  /// An adapter's name, the base's name, or "auto".
  public var model: String
  public var prompt: PromptField
  /// Default 16, as OpenAI.
  public var maxTokens: Int?
  /// Default 1 (OpenAI); 0 is greedy.
  public var temperature: Double?
  public var topP: Double?
  public var stop: StopField?
  public var seed: Int64?
  public var stream: Bool?
  /// Only 1 is served.
  public var n: Int?
  public var echo: Bool?
  public var streamOptions: StreamOptions?
  /// vLLM's extra parameter: keep generating past the end-of-text token (load tests of fixed length).
  public var ignoreEos: Bool?

  enum CodingKeys: String, CodingKey {
    case model, prompt, temperature, stop, seed, stream, n, echo
    case maxTokens = "max_tokens"
    case ignoreEos = "ignore_eos"
    case topP = "top_p"
    case streamOptions = "stream_options"
  }
}

/// `POST /v1/chat/completions`.
public struct ChatCompletionBody: Decodable, Sendable, Equatable {
  public var model: String
  public var messages: [ChatMessageBody]
  /// Default: the rest of the context.
  public var maxTokens: Int?
  /// OpenAI's newer name for `max_tokens`; `max_tokens` wins when both are given.
  public var maxCompletionTokens: Int?
  public var temperature: Double?
  public var topP: Double?
  public var stop: StopField?
  public var seed: Int64?
  public var stream: Bool?
  public var n: Int?
  public var streamOptions: StreamOptions?
  /// vLLM's extra parameter: keep generating past the end-of-turn token.
  public var ignoreEos: Bool?

  enum CodingKeys: String, CodingKey {
    case model, messages, temperature, stop, seed, stream, n
    case maxTokens = "max_tokens"
    case ignoreEos = "ignore_eos"
    case maxCompletionTokens = "max_completion_tokens"
    case topP = "top_p"
    case streamOptions = "stream_options"
  }
}

/// One chat message; `content` is a string or a list of `{"type": "text", "text": …}` parts.
public struct ChatMessageBody: Decodable, Sendable, Equatable {
  public var role: String
  public var content: String

  enum CodingKeys: String, CodingKey { case role, content }

  struct Part: Decodable {
    var type: String
    var text: String?
  }

  public init(role: String, content: String) {
    self.role = role
    self.content = content
  }

  public init(from decoder: any Decoder) throws {
    let container = try decoder.container(keyedBy: CodingKeys.self)
    role = try container.decode(String.self, forKey: .role)
    if try container.decodeNil(forKey: .content) {
      content = ""
    } else if let text = try? container.decode(String.self, forKey: .content) {
      content = text
    } else {
      let parts = try container.decode([Part].self, forKey: .content)
      var text = ""
      for (i, part) in parts.enumerated() {
        guard part.type == "text", let piece = part.text else {
          throw DecodingError.dataCorrupted(
            DecodingError.Context(
              codingPath: container.codingPath + [CodingKeys.content, IndexKey(i)],
              debugDescription: "only text parts ({\"type\": \"text\", \"text\": ...}) are served"))
        }
        text += piece
      }
      content = text
    }
  }
}

/// `prompt`: a string, a list of one string, or a list of token ids.
public enum PromptField: Decodable, Sendable, Equatable {
  case text(String)
  case tokens([Int32])

  public init(from decoder: any Decoder) throws {
    let container = try decoder.singleValueContainer()
    if let text = try? container.decode(String.self) {
      self = .text(text)
    } else if let texts = try? container.decode([String].self) {
      guard texts.count == 1 else {
        throw DecodingError.dataCorrupted(
          DecodingError.Context(
            codingPath: decoder.codingPath,
            debugDescription: "a list of \(texts.count) prompts; one prompt per request is served"))
      }
      self = .text(texts[0])
    } else if let ids = try? container.decode([Int32].self) {
      self = .tokens(ids)
    } else {
      throw DecodingError.typeMismatch(
        String.self,
        DecodingError.Context(
          codingPath: decoder.codingPath,
          debugDescription: "expected a string, a list of one string or a list of token ids"))
    }
  }
}

/// `stop`: a string or a list of up to 4 strings.
public struct StopField: Decodable, Sendable, Equatable {
  public var strings: [String]

  public init(_ strings: [String]) { self.strings = strings }

  public init(from decoder: any Decoder) throws {
    let container = try decoder.singleValueContainer()
    if container.decodeNil() {
      strings = []
    } else if let one = try? container.decode(String.self) {
      strings = [one]
    } else if let many = try? container.decode([String].self) {
      strings = many
    } else {
      throw DecodingError.typeMismatch(
        [String].self,
        DecodingError.Context(
          codingPath: decoder.codingPath, debugDescription: "expected a string or a list of strings"))
    }
  }
}

/// `stream_options`: `{"include_usage": true}` adds a last chunk with `usage` and no choices.
public struct StreamOptions: Decodable, Sendable, Equatable {
  public var includeUsage: Bool?
  enum CodingKeys: String, CodingKey { case includeUsage = "include_usage" }
}

/// `POST /v1/adapters`: `{"name": "sql", "path": "out/sql", "pin": false}`.
public struct AdapterLoadBody: Decodable, Sendable, Equatable {
  public var name: String
  public var path: String
  public var pin: Bool?
}

/// An array index in a coding path.
struct IndexKey: CodingKey {
  var intValue: Int?
  var stringValue: String { "\(intValue ?? 0)" }
  init(_ index: Int) { intValue = index }
  init?(intValue: Int) { self.intValue = intValue }
  init?(stringValue: String) { nil }
}
