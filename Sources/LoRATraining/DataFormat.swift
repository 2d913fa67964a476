/// How each line of a JSON Lines dataset is read. Raw values are the names used in options
/// and job files.
///
/// - `text`: `{"text": "..."}`, every token trained.
/// - `promptCompletion`: `{"prompt": "...", "completion": "..."}`, the completion trained.
/// - `messages`: `{"messages": [{"role": ..., "content": ...}]}`, rendered as ChatML, the
///   assistant turns trained.
/// - `inputIDs`: `{"input_ids": [...], "labels": [...]}`, pre-tokenized, with optional
///   Hugging Face labels (-100 = not trained).
/// - `auto`: each line's format is told from its keys.
///
/// Every format also accepts an "id" and a "meta" key, which are ignored.
public enum DataFormat: String, Sendable, Codable, CaseIterable {
  case auto
  case text
  case promptCompletion = "prompt_completion"
  case messages
  case inputIDs = "input_ids"
}
