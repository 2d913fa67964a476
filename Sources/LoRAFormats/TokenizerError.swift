/// Why a tokenizer could not be built or loaded.
public enum TokenizerError: Error, Equatable, CustomStringConvertible {
  /// A file could not be read from disk.
  case unreadableFile(path: String, reason: String)
  /// A file is not JSON of the shape the field path says (`detail` names the field).
  case malformedFile(path: String, detail: String)
  /// `model.type` in a `tokenizer.json` is not "BPE".
  case unsupportedModel(path: String, type: String)
  /// A `tokenizer.json` component or option this tokenizer does not reproduce exactly;
  /// `supported` lists what it does.
  case unsupportedComponent(path: String, field: String, found: String, supported: String)
  /// A `Split` pre-tokenizer regex that is none of the known GPT-2, Llama-3 or Qwen2 patterns.
  case unknownSplitPattern(path: String, pattern: String)
  /// A merge is not two tokens separated by a space; `source` names where it came from.
  case invalidMerge(source: String, index: Int, entry: String)
  /// There is a token type for some tokens but not for others.
  case tokenTypeCountMismatch(tokens: Int, tokenTypes: Int)
  /// There is a score for some tokens but not for others.
  case scoreCountMismatch(tokens: Int, scores: Int)
  /// A BOS, EOS, PAD or UNK id lies outside the vocabulary.
  case specialTokenOutOfRange(name: String, id: Int, vocabularySize: Int)
  /// The vocabulary has no tokens.
  case emptyVocabulary(source: String)

  public var description: String {
    switch self {
    case .unreadableFile(let path, let reason):
      return "cannot read \(path): \(reason)"
    case .malformedFile(let path, let detail):
      return "\(path) is not a valid tokenizer file: \(detail)"
    case .unsupportedModel(let path, let type):
      return
        "\(path): model.type is \"\(type)\", expected \"BPE\" (byte-level, or SentencePiece-style with byte_fallback)"
    case .unsupportedComponent(let path, let field, let found, let supported):
      return "\(path): \(field) is \(found), which this tokenizer does not support; supported: \(supported)"
    case .unknownSplitPattern(let path, let pattern):
      return
        "\(path): pre_tokenizer Split pattern \(pattern.debugDescription) is not the GPT-2, Llama-3 or Qwen2 pattern"
    case .invalidMerge(let source, let index, let entry):
      return "\(source)[\(index)] = \(entry.debugDescription): expected two tokens separated by a space"
    case .tokenTypeCountMismatch(let tokens, let tokenTypes):
      return "\(tokenTypes) token types for \(tokens) tokens: expected one type per token"
    case .scoreCountMismatch(let tokens, let scores):
      return "\(scores) scores for \(tokens) tokens: expected one score per token"
    case .specialTokenOutOfRange(let name, let id, let vocabularySize):
      return "\(name) token id \(id) is outside the vocabulary of \(vocabularySize) tokens"
    case .emptyVocabulary(let source):
      return "\(source): the vocabulary is empty, expected at least one token"
    }
  }
}
