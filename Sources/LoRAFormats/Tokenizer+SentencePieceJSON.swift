/// The parts of a `tokenizer.json` with `byte_fallback: true` that say how spaces become "▁":
/// exactly the layouts Llama 2, TinyLlama and Mistral ship, anything else is refused.
extension Tokenizer {
  private static let supportedSentencePieceNormalizers =
    "null, or Sequence[Prepend(\"▁\"), Replace(\" \", \"▁\")]"
  private static let supportedSentencePiecePreTokenizers =
    "Metaspace(replacement: \"▁\", prepend_scheme: first, always or never, split: false) with no normalizer, "
    + "or null with the Prepend + Replace normalizer"
  private static let supportedSentencePieceDecoders =
    "Sequence[Replace(\"▁\", \" \"), ByteFallback, Fuse, Strip(\" \", 1, 0)], without the Strip when no \"▁\" "
    + "is prepended"

  /// Where a `byte_fallback` tokenizer puts its "▁" prefix, after checking that its decoder
  /// undoes the encoding:
  ///
  /// - Llama 2, TinyLlama, Mistral 7B v0.1: normalizer `Sequence[Prepend("▁"), Replace(" ",
  ///   "▁")]` and no pre-tokenizer: `always`, before every stretch between special tokens.
  /// - Mistral 7B v0.3, transformers 5: no normalizer and `Metaspace(replacement: "▁", split:
  ///   false)` with `prepend_scheme` "first" (`firstUnlessSpace`), "always" (`unlessSpace`) or
  ///   "never" (`none`); files without `prepend_scheme` use `add_prefix_space` (true: "always").
  /// - The decoder is `Sequence[Replace("▁", " "), ByteFallback, Fuse, Strip(" ", 1, 0)]`, without
  ///   the `Strip` when no prefix is added.
  static func sentencePiecePrefix(_ file: TokenizerFile, path: String) throws -> SpacePrefix {
    let normalizers = steps(of: file.normalizer, sequenceKey: "normalizers")
    let prefix: SpacePrefix
    switch normalizers.map({ $0["type"]?.string ?? "?" }) {
    case []:
      prefix = try metaspacePrefix(file.preTokenizer, path: path)
    case ["Prepend", "Replace"]
    where normalizers[0]["prepend"]?.string == "▁" && isReplace(normalizers[1], of: " ", by: "▁"):
      guard file.preTokenizer?.object == nil else {
        throw TokenizerError.unsupportedComponent(
          path: path, field: "pre_tokenizer", found: describe(file.preTokenizer),
          supported: supportedSentencePiecePreTokenizers)
      }
      prefix = .always
    default:
      throw TokenizerError.unsupportedComponent(
        path: path, field: "normalizer", found: describe(file.normalizer),
        supported: supportedSentencePieceNormalizers)
    }

    let decoders = steps(of: file.decoder, sequenceKey: "decoders")
    var expected = ["Replace", "ByteFallback", "Fuse"]
    if prefix != .none { expected.append("Strip") }
    let stripsOneSpace =
      prefix == .none
      || (decoders.last?["content"]?.string == " " && decoders.last?["start"]?.number == 1
        && decoders.last?["stop"]?.number == 0)
    guard decoders.map({ $0["type"]?.string ?? "?" }) == expected, isReplace(decoders[0], of: "▁", by: " "),
      stripsOneSpace
    else {
      throw TokenizerError.unsupportedComponent(
        path: path, field: "decoder", found: describe(file.decoder), supported: supportedSentencePieceDecoders
      )
    }
    return prefix
  }

  /// The prefix a `Metaspace` pre-tokenizer adds; throws for anything else.
  private static func metaspacePrefix(_ section: JSONValue?, path: String) throws -> SpacePrefix {
    if let metaspace = section?.object, metaspace["type"]?.string == "Metaspace",
      metaspace["replacement"]?.string == "▁", metaspace["split"]?.bool == false
    {
      switch metaspace["prepend_scheme"]?.string {
      case "first": return .firstUnlessSpace
      case "always": return .unlessSpace
      case "never": return SpacePrefix.none
      case nil: return metaspace["add_prefix_space"]?.bool == false ? SpacePrefix.none : .unlessSpace
      default: break
      }
    }
    throw TokenizerError.unsupportedComponent(
      path: path, field: "pre_tokenizer", found: describe(section),
      supported: supportedSentencePiecePreTokenizers)
  }

  /// The steps of a component: a `Sequence`'s members, a single component, or none for null.
  private static func steps(of section: JSONValue?, sequenceKey: String) -> [[String: JSONValue]] {
    guard let object = section?.object else { return [] }
    guard object["type"]?.string == "Sequence" else { return [object] }
    return (object[sequenceKey]?.array ?? []).compactMap(\.object)
  }

  /// Whether a step is `Replace` of the plain string `pattern` by `content`.
  private static func isReplace(_ step: [String: JSONValue], of pattern: String, by content: String) -> Bool {
    step["type"]?.string == "Replace" && step["pattern"]?.object?["String"]?.string == pattern
      && step["content"]?.string == content
  }

  /// A component for error messages: `Type(key: value, …)`, a `Sequence` as `Sequence[…]`.
  private static func describe(_ section: JSONValue?) -> String {
    guard let object = section?.object else { return section?.description ?? "null" }
    let type = object["type"]?.string ?? "?"
    if type == "Sequence",
      let members = (object["normalizers"] ?? object["pretokenizers"] ?? object["decoders"])?.array
    {
      return "Sequence[\(members.map { describe($0) }.joined(separator: ", "))]"
    }
    let options = object.keys.filter { $0 != "type" }.sorted().map { key -> String in
      let value = object[key]!
      if let pattern = value.object?["String"] ?? value.object?["Regex"] { return "\(key): \(pattern)" }
      return "\(key): \(value)"
    }
    return options.isEmpty ? type : "\(type)(\(options.joined(separator: ", ")))"
  }
}
