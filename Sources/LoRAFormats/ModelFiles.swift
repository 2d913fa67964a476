import Foundation

/// A base model on disk, opened once: a GGUF file, or a Hugging Face folder
/// (`config.json`, safetensors, `tokenizer.json`).
public enum ModelFiles: Sendable {
  case gguf(GGUFFile)
  case huggingFace(folder: String)

  /// Opens `path`: a folder is a Hugging Face folder, a file must be GGUF.
  public static func open(_ path: String) throws -> ModelFiles {
    var isFolder: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
      throw FormatError.unreadable(file: path, reason: "no such file or folder")
    }
    if isFolder.boolValue {
      guard FileManager.default.fileExists(atPath: (path as NSString).appendingPathComponent("config.json"))
      else {
        throw FormatError.invalid(
          file: path, message: "is a folder without config.json; expected a Hugging Face model folder")
      }
      return .huggingFace(folder: path)
    }
    return .gguf(try GGUFFile(path: path))
  }

  public var path: String {
    switch self {
    case .gguf(let file): return file.path
    case .huggingFace(let folder): return folder
    }
  }

  /// The chat template the model ships, if any (GGUF `tokenizer.chat_template`, or
  /// `chat_template` in the folder's `tokenizer_config.json`).
  public var chatTemplate: String? {
    switch self {
    case .gguf(let file): return file.metadata["tokenizer.chat_template"]?.string
    case .huggingFace(let folder):
      let url = URL(fileURLWithPath: folder).appendingPathComponent("tokenizer_config.json")
      guard let data = try? Data(contentsOf: url),
        let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
      else { return nil }
      return json["chat_template"] as? String
    }
  }
}

extension Tokenizer {
  /// The tokenizer of a model: GGUF `tokenizer.ggml.*` metadata or the folder's `tokenizer.json`.
  public static func load(_ files: ModelFiles) throws -> Tokenizer {
    switch files {
    case .gguf(let file): return try Tokenizer(gguf: file)
    case .huggingFace(let folder):
      return try Tokenizer(
        tokenizerJSON: URL(fileURLWithPath: folder).appendingPathComponent("tokenizer.json"))
    }
  }

  /// Reads a tokenizer from GGUF metadata: `tokenizer.ggml.model` "gpt2" (byte-level BPE,
  /// with `tokenizer.ggml.merges` and `tokenizer.ggml.pre`) or "llama" (SentencePiece-style BPE
  /// with byte fallback, with `tokenizer.ggml.scores`).
  ///
  /// For "llama", absent keys take llama.cpp's defaults: BOS 1, EOS 2, UNK 0,
  /// `add_bos_token` and `add_space_prefix` true.
  public convenience init(gguf: GGUFFile) throws {
    let m = gguf.metadata
    guard let model = m["tokenizer.ggml.model"]?.string else {
      throw FormatError.invalid(
        file: gguf.path, message: "has no tokenizer (metadata 'tokenizer.ggml.model' is missing)")
    }
    guard model == "gpt2" || model == "llama" else {
      throw FormatError.unsupported(
        file: gguf.path,
        message: "tokenizer.ggml.model is '\(model)'; supported: 'gpt2' (byte-level BPE) and 'llama' "
          + "(SentencePiece BPE with byte fallback)")
    }
    guard let tokens = m["tokenizer.ggml.tokens"]?.array?.compactMap(\.string), !tokens.isEmpty else {
      throw FormatError.invalid(
        file: gguf.path, message: "metadata 'tokenizer.ggml.tokens' is missing or not strings")
    }
    let types = m["tokenizer.ggml.token_type"]?.array?.compactMap { $0.int.map(Int32.init) }
    let bosID = m["tokenizer.ggml.bos_token_id"]?.int
    let eosID = m["tokenizer.ggml.eos_token_id"]?.int
    let padID = m["tokenizer.ggml.padding_token_id"]?.int
    let addBOS = m["tokenizer.ggml.add_bos_token"]?.bool
    do {
      if model == "llama" {
        guard let scores = m["tokenizer.ggml.scores"]?.array?.compactMap(\.double),
          scores.count == tokens.count
        else {
          throw FormatError.invalid(
            file: gguf.path,
            message:
              "metadata 'tokenizer.ggml.scores' is missing or not one number per token (\(tokens.count) tokens)"
          )
        }
        try self.init(
          tokens: tokens, scores: scores.map(Float.init), tokenTypes: types, bosID: bosID ?? 1,
          eosID: eosID ?? 2,
          unkID: m["tokenizer.ggml.unknown_token_id"]?.int ?? 0, padID: padID, addBOS: addBOS ?? true,
          addSpacePrefix: m["tokenizer.ggml.add_space_prefix"]?.bool ?? true)
        return
      }
      let merges = m["tokenizer.ggml.merges"]?.array?.compactMap(\.string) ?? []
      let preName = m["tokenizer.ggml.pre"]?.string ?? "default"
      guard let pre = PreTokenizer(ggufName: preName) else {
        throw FormatError.unsupported(
          file: gguf.path, message: "tokenizer.ggml.pre '\(preName)' is not a known pre-tokenizer")
      }
      try self.init(
        tokens: tokens, tokenTypes: types, merges: merges, bosID: bosID, eosID: eosID, padID: padID,
        preTokenizer: pre, addBOS: addBOS ?? false)
    } catch let error as TokenizerError {
      throw FormatError.invalid(file: gguf.path, message: "tokenizer: \(error)")
    }
  }
}
