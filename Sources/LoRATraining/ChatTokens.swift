import LoRAFormats

/// A rendered conversation as one example: the whole text encoded at once (special tokens
/// parsed, no automatic BOS), as Hugging Face's `apply_chat_template(tokenize=True)` does, so
/// the ids are the model's own; a token is trained when it holds any byte of an assistant
/// span.
enum ChatTokens {
  /// The example of `text`; tokens overlapping `assistantByteRanges` (UTF-8 offsets) are
  /// trained (every token when `trainOnPrompt`).
  ///
  /// A span's first token is the first one where the encoding of the text before the span
  /// and that of the whole text part, so a token that merges the last prompt byte with the
  /// first answer byte counts as answer; its end is found the same way from the text up to
  /// the span's end.
  static func example(
    text: String, assistantByteRanges: [Range<Int>], tokenizer: Tokenizer, trainOnPrompt: Bool
  ) -> Example {
    let tokens = tokenizer.encode(text, withBOS: false)
    var trained = [Bool](repeating: trainOnPrompt, count: tokens.count)
    if !trainOnPrompt {
      let utf8 = Array(text.utf8)
      func sharedPrefix(upTo offset: Int) -> Int {
        let prefix = tokenizer.encode(String(decoding: utf8[..<offset], as: UTF8.self), withBOS: false)
        return zip(prefix, tokens).prefix { $0 == $1 }.count
      }
      for span in assistantByteRanges {
        let first = sharedPrefix(upTo: span.lowerBound)
        let end =
          span.upperBound == utf8.count ? tokens.count : max(first, sharedPrefix(upTo: span.upperBound))
        for index in first..<end { trained[index] = true }
      }
    }
    return Example(tokens: tokens, trained: trained)
  }
}
