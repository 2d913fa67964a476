import Foundation

extension Tokenizer {
  /// Loads a Hugging Face `tokenizer.json` whose `model.type` is "BPE", either byte-level with
  /// a byte-level pre-tokenizer: `ByteLevel` (GPT-2), `Sequence[Digits(individual_digits),
  /// ByteLevel]` (SmolLM2), or `Sequence[Split(Llama-3 or Qwen2 regex), ByteLevel(use_regex:
  /// false)]`; or SentencePiece-style with `byte_fallback: true`, as Llama 2, TinyLlama and
  /// Mistral write it (see `sentencePiecePrefix`). Merges apply in the file's order.
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
    if let prefix = model.continuingSubwordPrefix, !prefix.isEmpty {
      throw TokenizerError.unsupportedComponent(
        path: path, field: "model.continuing_subword_prefix", found: prefix.debugDescription,
        supported: "null or \"\"")
    }
    if let suffix = model.endOfWordSuffix, !suffix.isEmpty {
      throw TokenizerError.unsupportedComponent(
        path: path, field: "model.end_of_word_suffix", found: suffix.debugDescription,
        supported: "null or \"\"")
    }

    // Vocabulary: model.vocab, then added_tokens on top; ids nobody names stay unused.
    let addedTokens = file.addedTokens ?? []
    let largestID = max(model.vocab.values.max() ?? -1, addedTokens.map(\.id).max() ?? -1)
    // Unnamed ids may sit between named ones, but not so many that one large id makes us
    // allocate far more than the file holds (found by fuzzing: an id near 2⁵⁹).
    let named = model.vocab.count + addedTokens.count
    let idLimit = max(2 * named, named + 65_536)
    guard largestID < idLimit else {
      throw TokenizerError.malformedFile(
        path: path,
        detail:
          "token id \(largestID) is far past the \(named) tokens the file names; expected ids below \(idLimit)"
      )
    }
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
    let rules = try model.merges.enumerated().map { index, entry -> MergeRule in
      switch entry {
      case .joined(let text):
        let (left, right) = try Tokenizer.mergePair(text, source: mergeSource, index: index)
        return MergeRule(left: left, right: right, rank: index)
      case .pair(let parts):
        guard parts.count == 2 else {
          throw TokenizerError.invalidMerge(source: mergeSource, index: index, entry: "\(parts)")
        }
        return MergeRule(left: parts[0], right: parts[1], rank: index)
      }
    }

    let algorithm: TokenizerAlgorithm
    let preTokenizer: PreTokenizer
    let normalizesNFC: Bool
    if model.byteFallback {
      if model.ignoreMerges {
        throw TokenizerError.unsupportedComponent(
          path: path, field: "model.ignore_merges", found: "true", supported: "false with byte_fallback")
      }
      algorithm = .sentencePieceBPE(prefix: try Tokenizer.sentencePiecePrefix(file, path: path))
      preTokenizer = .gpt2
      normalizesNFC = false
    } else {
      algorithm = .byteLevelBPE
      preTokenizer = try Tokenizer.preTokenizer(file.preTokenizer, path: path)
      normalizesNFC = try Tokenizer.normalizesNFC(file.normalizer, path: path)
    }

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
      tokens: tokens, kinds: kinds, merges: rules, bosID: templateBOSID ?? lookup(config?.bos),
      eosID: lookup(config?.eos), padID: lookup(config?.pad),
      unkID: lookup(model.unkToken),
      algorithm: algorithm, preTokenizer: preTokenizer, addBOS: templateBOSID != nil,
      ignoresMerges: model.ignoreMerges, normalizesNFC: normalizesNFC, source: path)
  }

  /// The Split patterns (as written in `tokenizer.json`, JSON escapes undone) we reproduce.
  static let splitPatterns: [String: PreTokenizer] = [
    #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#: .gpt2,
    #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#:
      .llama3,
    #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#:
      .qwen2,
  ]

  /// What the byte-level `pre_tokenizer` may be, for error messages.
  private static let supportedPreTokenizers =
    "ByteLevel, Sequence[Digits(individual_digits: true), ByteLevel], or Sequence[Split(the GPT-2, "
    + "Llama-3 or Qwen2 regex), ByteLevel(use_regex: false)]; with byte_fallback: null or Metaspace"

  /// Maps the `pre_tokenizer` section to a mode, or throws naming what was found.
  private static func preTokenizer(_ section: JSONValue?, path: String) throws -> PreTokenizer {
    let field = "pre_tokenizer"
    let supported = supportedPreTokenizers
    guard let object = section?.object else {
      throw TokenizerError.unsupportedComponent(path: path, field: field, found: "null", supported: supported)
    }
    let steps: [[String: JSONValue]]
    if object["type"]?.string == "Sequence" {
      steps = (object["pretokenizers"]?.array ?? []).compactMap(\.object)
    } else {
      steps = [object]
    }
    let found = describe(steps)
    guard let byteLevel = steps.last, byteLevel["type"]?.string == "ByteLevel" else {
      throw TokenizerError.unsupportedComponent(path: path, field: field, found: found, supported: supported)
    }
    if byteLevel["add_prefix_space"]?.bool == true {
      throw TokenizerError.unsupportedComponent(
        path: path, field: "\(field) ByteLevel.add_prefix_space", found: "true", supported: "false")
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
    throw TokenizerError.unsupportedComponent(path: path, field: field, found: found, supported: supported)
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
        path: path, field: "normalizer", found: types.joined(separator: ", "),
        supported: "null or NFC; with byte_fallback: Sequence[Prepend(\"▁\"), Replace(\" \", \"▁\")]")
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
