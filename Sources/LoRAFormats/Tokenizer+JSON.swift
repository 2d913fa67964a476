import Foundation

extension Tokenizer {
  /// Loads a Hugging Face `tokenizer.json` whose `model.type` is "BPE" with a byte-level
  /// pre-tokenizer: `ByteLevel` (GPT-2), `Sequence[Digits(individual_digits), ByteLevel]`
  /// (SmolLM2), or `Sequence[Split(Llama-3 or Qwen2 regex), ByteLevel(use_regex: false)]`.
  ///
  /// Every entry of `added_tokens` is matched in text before BPE: `special: true` ones as
  /// control tokens, the others as user-defined tokens (their `lstrip`, `rstrip` and
  /// `single_word` flags are not applied). `addBOS` is true when `post_processor` is a
  /// `TemplateProcessing` (alone or in a `Sequence`) whose single-sequence template starts with
  /// a special token, which is then the BOS. EOS and PAD (and BOS, when the template has none)
  /// come from `bos_token`, `eos_token` and `pad_token` of a `tokenizer_config.json` in the
  /// same folder, if there is one; otherwise they are nil.
  public convenience init(tokenizerJSON url: URL) throws {
    let path = url.path
    let file = try decodeJSON(TokenizerFile.self, from: url)
    let model = file.model
    guard model.type == "BPE" else {
      throw TokenizerError.unsupportedModel(path: path, type: model.type ?? "missing")
    }
    if model.byteFallback {
      throw TokenizerError.unsupportedComponent(path: path, field: "model.byte_fallback", found: "true")
    }
    if let prefix = model.continuingSubwordPrefix, !prefix.isEmpty {
      throw TokenizerError.unsupportedComponent(
        path: path, field: "model.continuing_subword_prefix", found: prefix.debugDescription)
    }
    if let suffix = model.endOfWordSuffix, !suffix.isEmpty {
      throw TokenizerError.unsupportedComponent(
        path: path, field: "model.end_of_word_suffix", found: suffix.debugDescription)
    }

    // Vocabulary: model.vocab, then added_tokens on top; ids nobody names stay unused.
    let addedTokens = file.addedTokens ?? []
    let largestID = max(model.vocab.values.max() ?? -1, addedTokens.map(\.id).max() ?? -1)
    var tokens = [String](repeating: "", count: largestID + 1)
    var kinds = [TokenKind](repeating: .unused, count: largestID + 1)
    for (token, id) in model.vocab {
      guard id >= 0 else {
        throw TokenizerError.malformedFile(
          path: path, detail: "model.vocab[\(token.debugDescription)] is \(id), expected an id >= 0")
      }
      tokens[id] = token
      kinds[id] = .normal
    }
    for added in addedTokens {
      guard added.id >= 0 else {
        throw TokenizerError.malformedFile(
          path: path, detail: "added_tokens id \(added.id) of \(added.content.debugDescription) is negative")
      }
      tokens[added.id] = added.content
      kinds[added.id] = added.special ? .control : .userDefined
    }

    let mergeSource = "\(path): model.merges"
    let pairs = try model.merges.enumerated().map { index, entry -> (String, String) in
      switch entry {
      case .joined(let text):
        return try Tokenizer.mergePair(text, source: mergeSource, index: index)
      case .pair(let parts):
        guard parts.count == 2 else {
          throw TokenizerError.invalidMerge(source: mergeSource, index: index, entry: "\(parts)")
        }
        return (parts[0], parts[1])
      }
    }

    let preTokenizer = try Tokenizer.preTokenizer(file.preTokenizer, path: path)
    let normalizesNFC = try Tokenizer.normalizesNFC(file.normalizer, path: path)

    func lookup(_ name: String?) -> Int? {
      guard let name else { return nil }
      if let added = addedTokens.first(where: { $0.content == name }) { return added.id }
      return model.vocab[name]
    }
    let templateBOS = Tokenizer.leadingSpecialToken(file.postProcessor)
    let templateBOSID = templateBOS.flatMap { $0.id ?? lookup($0.name) }
    let config = try TokenizerConfig.load(
      from: url.deletingLastPathComponent().appendingPathComponent("tokenizer_config.json"))

    try self.init(
      tokens: tokens, kinds: kinds, mergePairs: pairs, bosID: templateBOSID ?? lookup(config?.bos),
      eosID: lookup(config?.eos), padID: lookup(config?.pad), preTokenizer: preTokenizer,
      addBOS: templateBOSID != nil, ignoresMerges: model.ignoreMerges, normalizesNFC: normalizesNFC,
      source: path)
  }

  /// The Split patterns (as written in `tokenizer.json`, JSON escapes undone) we reproduce.
  static let splitPatterns: [String: PreTokenizer] = [
    #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#: .gpt2,
    #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#:
      .llama3,
    #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#:
      .qwen2,
  ]

  /// Maps the `pre_tokenizer` section to a mode, or throws naming what was found.
  private static func preTokenizer(_ section: JSONValue?, path: String) throws -> PreTokenizer {
    let field = "pre_tokenizer"
    guard let object = section?.object else {
      throw TokenizerError.unsupportedComponent(path: path, field: field, found: "null")
    }
    let steps: [[String: JSONValue]]
    if object["type"]?.string == "Sequence" {
      steps = (object["pretokenizers"]?.array ?? []).compactMap(\.object)
    } else {
      steps = [object]
    }
    let found = describe(steps)
    guard let byteLevel = steps.last, byteLevel["type"]?.string == "ByteLevel" else {
      throw TokenizerError.unsupportedComponent(path: path, field: field, found: found)
    }
    if byteLevel["add_prefix_space"]?.bool == true {
      throw TokenizerError.unsupportedComponent(
        path: path, field: "\(field) ByteLevel.add_prefix_space", found: "true")
    }
    let usesRegex = byteLevel["use_regex"]?.bool ?? true
    let before = steps.dropLast()
    if before.isEmpty && usesRegex { return .gpt2 }
    if before.count == 1, let step = before.first {
      switch step["type"]?.string {
      case "Digits" where usesRegex && step["individual_digits"]?.bool == true:
        return .gpt2Digits
      case "Split" where !usesRegex:
        guard let pattern = step["pattern"]?.object?["Regex"]?.string,
          step["behavior"]?.string == "Isolated", step["invert"]?.bool != true
        else { break }
        guard let mode = splitPatterns[pattern] else {
          throw TokenizerError.unknownSplitPattern(path: path, pattern: pattern)
        }
        return mode
      default:
        break
      }
    }
    throw TokenizerError.unsupportedComponent(path: path, field: field, found: found)
  }

  /// "Sequence[Digits(individual_digits: true), ByteLevel(use_regex: true)]" and the like.
  private static func describe(_ steps: [[String: JSONValue]]) -> String {
    let names = steps.map { step -> String in
      let type = step["type"]?.string ?? "?"
      let options = ["individual_digits", "use_regex", "behavior"].compactMap { key -> String? in
        guard let value = step[key] else { return nil }
        return "\(key): \(value)"
      }
      return options.isEmpty ? type : "\(type)(\(options.joined(separator: ", ")))"
    }
    return steps.count == 1 ? names[0] : "Sequence[\(names.joined(separator: ", "))]"
  }

  /// Whether the `normalizer` section is NFC; nothing else is supported.
  private static func normalizesNFC(_ section: JSONValue?, path: String) throws -> Bool {
    guard let object = section?.object else { return false }
    let steps =
      object["type"]?.string == "Sequence"
      ? (object["normalizers"]?.array ?? []).compactMap(\.object) : [object]
    let types = steps.map { $0["type"]?.string ?? "?" }
    switch types {
    case []: return false
    case ["NFC"]: return true
    default:
      throw TokenizerError.unsupportedComponent(
        path: path, field: "normalizer", found: types.joined(separator: ", "))
    }
  }

  /// The special token a `TemplateProcessing` puts before the single sequence, by name and
  /// (when its `special_tokens` entry says) id.
  private static func leadingSpecialToken(_ section: JSONValue?) -> (name: String, id: Int?)? {
    guard let object = section?.object else { return nil }
    switch object["type"]?.string {
    case "Sequence":
      for processor in object["processors"]?.array ?? [] {
        if let found = leadingSpecialToken(processor) { return found }
      }
      return nil
    case "TemplateProcessing":
      guard let first = object["single"]?.array?.first?.object,
        let name = first["SpecialToken"]?.object?["id"]?.string
      else { return nil }
      let id = object["special_tokens"]?.object?[name]?.object?["ids"]?.array?.first?.number
      return (name, id.map { Int($0) })
    default:
      return nil
    }
  }
}

/// Decodes a JSON file, turning read and decoding failures into `TokenizerError`s naming it.
private func decodeJSON<T: Decodable>(_ type: T.Type, from url: URL) throws -> T {
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
private struct TokenizerFile: Decodable {
  var model: BPEModel
  var addedTokens: [AddedToken]?
  var normalizer: JSONValue?
  var preTokenizer: JSONValue?
  var postProcessor: JSONValue?

  enum CodingKeys: String, CodingKey {
    case model, normalizer
    case addedTokens = "added_tokens"
    case preTokenizer = "pre_tokenizer"
    case postProcessor = "post_processor"
  }
}

/// `model`: the vocabulary and merges are decoded only when `type` is "BPE".
private struct BPEModel: Decodable {
  var type: String?
  var vocab: [String: Int] = [:]
  var merges: [MergeEntry] = []
  var ignoreMerges = false
  var byteFallback = false
  var continuingSubwordPrefix: String?
  var endOfWordSuffix: String?

  enum CodingKeys: String, CodingKey {
    case type, vocab, merges
    case ignoreMerges = "ignore_merges"
    case byteFallback = "byte_fallback"
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
    continuingSubwordPrefix = try container.decodeIfPresent(String.self, forKey: .continuingSubwordPrefix)
    endOfWordSuffix = try container.decodeIfPresent(String.self, forKey: .endOfWordSuffix)
  }
}

/// A merge: "left right" (older files) or ["left", "right"] (newer ones).
private enum MergeEntry: Decodable {
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
private struct AddedToken: Decodable {
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
private struct TokenizerConfig: Decodable {
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
private enum JSONValue: Decodable, CustomStringConvertible {
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
