/// What a `Tokenizer` runs on the text between special tokens.
public enum TokenizerAlgorithm: Sendable, Equatable, CustomStringConvertible {
  /// Byte-level BPE (GPT-2, SmolLM2, Qwen2, Llama 3; GGUF `tokenizer.ggml.model` "gpt2"): the
  /// `preTokenizer` cuts the text into pieces, each piece's UTF-8 bytes become GPT-2's byte
  /// characters, and merges apply by rank within each piece.
  case byteLevelBPE
  /// SentencePiece-style BPE with byte fallback (Llama 2, Mistral, TinyLlama; GGUF
  /// `tokenizer.ggml.model` "llama"): spaces become "▁" (U+2581), `prefix` says where a "▁" is
  /// put in front, merges apply to the characters of the whole stretch of text, and
  /// characters left outside the vocabulary become their bytes' `<0xXX>` tokens.
  case sentencePieceBPE(prefix: SpacePrefix)

  public var description: String {
    switch self {
    case .byteLevelBPE: return "byte-level BPE"
    case .sentencePieceBPE(let prefix): return "SentencePiece BPE with byte fallback, space prefix \(prefix)"
    }
  }
}

/// Where a SentencePiece-style tokenizer puts a "▁" in front of the text (the "dummy prefix"
/// that makes a word at the start look like a word after a space). Decoding drops one leading
/// space unless the prefix is `none`.
public enum SpacePrefix: Sendable, Equatable, CustomStringConvertible {
  /// Never (GGUF `tokenizer.ggml.add_space_prefix` false; `Metaspace` `prepend_scheme: "never"`).
  case none
  /// Before every stretch of text between special tokens: llama.cpp's `add_space_prefix`,
  /// SentencePiece's `add_dummy_prefix`, and the `Prepend("▁")` normalizer in the
  /// `tokenizer.json` of Llama 2, TinyLlama and Mistral 7B v0.1.
  case always
  /// Before every stretch that does not already start with a space or "▁" (`Metaspace`
  /// `prepend_scheme: "always"`).
  case unlessSpace
  /// Before the stretch at the very start of the text, unless it starts with a space or "▁";
  /// nowhere after a special token (`Metaspace` `prepend_scheme: "first"`: Mistral 7B v0.3,
  /// and what transformers 5 writes for Llama tokenizers).
  case firstUnlessSpace

  public var description: String {
    switch self {
    case .none: return "none"
    case .always: return "always"
    case .unlessSpace: return "unless the text starts with a space"
    case .firstUnlessSpace: return "at the start of the text unless it starts with a space"
    }
  }
}
