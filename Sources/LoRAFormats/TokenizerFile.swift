import Foundation

/// Decodes a JSON file, turning read and decoding failures into `TokenizerError`s naming it.
func decodeJSON<T: Decodable>(_ type: T.Type, from url: URL) throws -> T {
  let data: Data
  do {
    data = try Data(contentsOf: url)
  } catch {
    throw TokenizerError.unreadableFile(path: url.path, reason: error.localizedDescription)
  }
  do {
    return try JSONDecoder().decode(type, from: data)
  } catch let error as DecodingError {
    throw TokenizerError.malformedFile(path: url.path, detail: describe(error))
  } catch {
    throw TokenizerError.malformedFile(path: url.path, detail: "\(error)")
  }
}

private func describe(_ error: DecodingError) -> String {
  func field(_ path: [CodingKey]) -> String {
    path.isEmpty
      ? "top level" : path.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
  }
  switch error {
  case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
    return "\(field(context.codingPath)): \(context.debugDescription)"
  case .keyNotFound(let key, let context):
    return "\(field(context.codingPath + [key])) is missing"
  @unknown default:
    return "\(error)"
  }
}

/// The parts of `tokenizer.json` the tokenizer reads.
struct TokenizerFile: Decodable {
  var model: BPEModel
  var addedTokens: [AddedToken]?
  var normalizer: JSONValue?
  var preTokenizer: JSONValue?
  var postProcessor: JSONValue?
  var decoder: JSONValue?

  enum CodingKeys: String, CodingKey {
    case model, normalizer, decoder
    case addedTokens = "added_tokens"
    case preTokenizer = "pre_tokenizer"
    case postProcessor = "post_processor"
  }
}

/// `model`: the vocabulary and merges are decoded only when `type` is "BPE".
struct BPEModel: Decodable {
  var type: String?
  var vocab: [String: Int] = [:]
  var merges: [MergeEntry] = []
  var ignoreMerges = false
  var byteFallback = false
  var unkToken: String?
  var continuingSubwordPrefix: String?
  var endOfWordSuffix: String?

  enum CodingKeys: String, CodingKey {
    case type, vocab, merges
    case ignoreMerges = "ignore_merges"
    case byteFallback = "byte_fallback"
    case unkToken = "unk_token"
    case continuingSubwordPrefix = "continuing_subword_prefix"
    case endOfWordSuffix = "end_of_word_suffix"
  }

  init(from decoder: any Decoder) throws {
    let container = try decoder.container(keyedBy: CodingKeys.self)
    type = try container.decodeIfPresent(String.self, forKey: .type)
    guard type == "BPE" else { return }
    vocab = try container.decode([String: Int].self, forKey: .vocab)
    merges = try container.decodeIfPresent([MergeEntry].self, forKey: .merges) ?? []
    ignoreMerges = try container.decodeIfPresent(Bool.self, forKey: .ignoreMerges) ?? false
    byteFallback = try container.decodeIfPresent(Bool.self, forKey: .byteFallback) ?? false
    unkToken = try container.decodeIfPresent(String.self, forKey: .unkToken)
    continuingSubwordPrefix = try container.decodeIfPresent(String.self, forKey: .continuingSubwordPrefix)
    endOfWordSuffix = try container.decodeIfPresent(String.self, forKey: .endOfWordSuffix)
  }
}

/// A merge: "left right" (older files) or ["left", "right"] (newer ones).
enum MergeEntry: Decodable {
  case joined(String)
  case pair([String])

  init(from decoder: any Decoder) throws {
    let container = try decoder.singleValueContainer()
    if let text = try? container.decode(String.self) {
      self = .joined(text)
    } else {
      self = .pair(try container.decode([String].self))
    }
  }
}

/// One entry of `added_tokens`.
struct AddedToken: Decodable {
  var id: Int
  var content: String
  var special: Bool

  enum CodingKeys: String, CodingKey { case id, content, special }

  init(from decoder: any Decoder) throws {
    let container = try decoder.container(keyedBy: CodingKeys.self)
    id = try container.decode(Int.self, forKey: .id)
    content = try container.decode(String.self, forKey: .content)
    special = try container.decodeIfPresent(Bool.self, forKey: .special) ?? false
  }
}

/// The special-token names of a `tokenizer_config.json`; each is a string or `{"content": …}`.
struct TokenizerConfig: Decodable {
  var bos: String?
  var eos: String?
  var pad: String?

  enum CodingKeys: String, CodingKey {
    case bos = "bos_token"
    case eos = "eos_token"
    case pad = "pad_token"
  }

  init(from decoder: any Decoder) throws {
    let container = try decoder.container(keyedBy: CodingKeys.self)
    func name(_ key: CodingKeys) throws -> String? {
      let value = try container.decodeIfPresent(JSONValue.self, forKey: key)
      return value?.string ?? value?.object?["content"]?.string
    }
    bos = try name(.bos)
    eos = try name(.eos)
    pad = try name(.pad)
  }

  /// The config at `url`, or nil if there is no such file.
  static func load(from url: URL) throws -> TokenizerConfig? {
    guard FileManager.default.fileExists(atPath: url.path) else { return nil }
    return try decodeJSON(TokenizerConfig.self, from: url)
  }
}

/// Any JSON value, for the small, loosely shaped sections of `tokenizer.json`.
enum JSONValue: Decodable, CustomStringConvertible {
  case null
  case bool(Bool)
  case number(Double)
  case string(String)
  case array([JSONValue])
  case object([String: JSONValue])

  init(from decoder: any Decoder) throws {
    let container = try decoder.singleValueContainer()
    if container.decodeNil() {
      self = .null
    } else if let value = try? container.decode(Bool.self) {
      self = .bool(value)
    } else if let value = try? container.decode(Double.self) {
      self = .number(value)
    } else if let value = try? container.decode(String.self) {
      self = .string(value)
    } else if let value = try? container.decode([JSONValue].self) {
      self = .array(value)
    } else {
      self = .object(try container.decode([String: JSONValue].self))
    }
  }

  var bool: Bool? { if case .bool(let value) = self { value } else { nil } }
  var number: Double? { if case .number(let value) = self { value } else { nil } }
  var string: String? { if case .string(let value) = self { value } else { nil } }
  var array: [JSONValue]? { if case .array(let value) = self { value } else { nil } }
  var object: [String: JSONValue]? { if case .object(let value) = self { value } else { nil } }

  var description: String {
    switch self {
    case .null: return "null"
    case .bool(let value): return "\(value)"
    case .number(let value): return "\(value)"
    case .string(let value): return value.debugDescription
    case .array(let values): return "[\(values.map(\.description).joined(separator: ", "))]"
    case .object(let members): return "{\(members.keys.sorted().joined(separator: ", "))}"
    }
  }
}
