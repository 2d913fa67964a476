import Foundation
import LoRAServe

/// Token counts of one request.
public struct Usage: Codable, Sendable, Equatable {
  public var promptTokens: Int
  public var completionTokens: Int
  public var totalTokens: Int

  public init(prompt: Int, completion: Int) {
    promptTokens = prompt
    completionTokens = completion
    totalTokens = prompt + completion
  }

  enum CodingKeys: String, CodingKey {
    case promptTokens = "prompt_tokens"
    case completionTokens = "completion_tokens"
    case totalTokens = "total_tokens"
  }
}

/// `/v1/completions`: the whole answer (object "text_completion") or one streamed chunk
/// (the same object with the new text; `finish_reason` null until the last).
public struct CompletionResponse: Encodable, Sendable {
  public struct Choice: Encodable, Sendable {
    public var index = 0
    public var text: String
    public var logprobs: String? = nil
    public var finishReason: String?
    enum CodingKeys: String, CodingKey {
      case index, text, logprobs
      case finishReason = "finish_reason"
    }
    public func encode(to encoder: any Encoder) throws {
      var c = encoder.container(keyedBy: CodingKeys.self)
      try c.encode(index, forKey: .index)
      try c.encode(text, forKey: .text)
      try c.encodeNil(forKey: .logprobs)
      try c.encode(finishReason, forKey: .finishReason)
    }
  }
  public var id: String
  public var object = "text_completion"
  public var created: Int
  public var model: String
  public var choices: [Choice]
  public var usage: Usage?
}

/// `/v1/chat/completions`: object "chat.completion" (whole) or "chat.completion.chunk" (streamed,
/// with `delta` instead of `message`).
public struct ChatCompletionResponse: Encodable, Sendable {
  public struct Message: Encodable, Sendable {
    public var role: String?
    public var content: String?
  }
  public struct Choice: Encodable, Sendable {
    public var index = 0
    public var message: Message?
    public var delta: Message?
    public var finishReason: String?
    enum CodingKeys: String, CodingKey {
      case index, message, delta
      case finishReason = "finish_reason"
    }
    public func encode(to encoder: any Encoder) throws {
      var c = encoder.container(keyedBy: CodingKeys.self)
      try c.encode(index, forKey: .index)
      try c.encodeIfPresent(message, forKey: .message)
      try c.encodeIfPresent(delta, forKey: .delta)
      try c.encode(finishReason, forKey: .finishReason)
    }
  }
  public var id: String
  public var object: String
  public var created: Int
  public var model: String
  public var choices: [Choice]
  public var usage: Usage?
}

/// One entry of `GET /v1/models`: the base (`parent` null) or an adapter (`parent` the base's
/// name, with the adapter's details).
public struct ModelEntry: Encodable, Sendable {
  public var id: String
  public var object = "model"
  public var created: Int
  public var ownedBy = "swift-lora-dist"
  public var root: String
  public var parent: String?
  /// Adapters only.
  public var adapter: AdapterInfo?
  /// The base only: its context length in tokens.
  public var maxModelLen: Int?
  public var fingerprint: String?

  enum CodingKeys: String, CodingKey {
    case id, object, created, root, parent, adapter, fingerprint
    case ownedBy = "owned_by"
    case maxModelLen = "max_model_len"
  }

  public func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(id, forKey: .id)
    try c.encode(object, forKey: .object)
    try c.encode(created, forKey: .created)
    try c.encode(ownedBy, forKey: .ownedBy)
    try c.encode(root, forKey: .root)
    try c.encode(parent, forKey: .parent)
    if let adapter { try c.encode(AdapterDetails(adapter), forKey: .adapter) }
    try c.encodeIfPresent(maxModelLen, forKey: .maxModelLen)
    try c.encodeIfPresent(fingerprint, forKey: .fingerprint)
  }
}

/// An `AdapterInfo` with snake_case keys (`/v1/models`, `POST /v1/adapters`).
public struct AdapterDetails: Encodable, Sendable {
  public var info: AdapterInfo
  public init(_ info: AdapterInfo) { self.info = info }

  enum CodingKeys: String, CodingKey {
    case name, path, kind, parent, targets, rank, parameters, bytes, resident, pinned, routable
    case baseFingerprint = "base_fingerprint"
  }

  public func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(info.name, forKey: .name)
    try c.encode(info.path, forKey: .path)
    try c.encode(info.kind, forKey: .kind)
    try c.encode(info.baseFingerprint, forKey: .baseFingerprint)
    try c.encode(info.parent, forKey: .parent)
    try c.encode(info.targets, forKey: .targets)
    try c.encode(info.rank, forKey: .rank)
    try c.encode(info.parameters, forKey: .parameters)
    try c.encode(info.bytes, forKey: .bytes)
    try c.encode(info.resident, forKey: .resident)
    try c.encode(info.pinned, forKey: .pinned)
    try c.encode(info.routable, forKey: .routable)
  }
}

/// `GET /v1/models`.
public struct ModelList: Encodable, Sendable {
  public var object = "list"
  public var data: [ModelEntry]
}

/// JSON the way every response is written: sorted keys, slashes unescaped.
enum ResponseJSON {
  static func encode(_ value: some Encodable) -> Data {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return (try? encoder.encode(value)) ?? Data("{}".utf8)
  }
}
