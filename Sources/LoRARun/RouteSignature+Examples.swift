import LoRAModel
import LoRAServe
import LoRATraining

extension RouteSignature {
  /// Prompts sampled for a signature: at most this many, evenly spaced over the data.
  public static let samplePrompts = 32
  /// Tokens of each prompt kept.
  public static let promptTokens = 128

  /// The prompt of each example: its untrained prefix (the prompt of prompt/completion data,
  /// the turns before the first assistant answer), or its first tokens when every token is
  /// trained (plain text).
  public static func prompts(of examples: [Example]) -> [[Int32]] {
    guard !examples.isEmpty else { return [] }
    let stride = max(1, examples.count / samplePrompts)
    return Swift.stride(from: 0, to: examples.count, by: stride).prefix(samplePrompts).map { i in
      let e = examples[i]
      let end = e.trained.firstIndex(of: true).flatMap { $0 > 0 ? $0 : nil } ?? e.tokens.count
      return Array(e.tokens[..<min(end, promptTokens)])
    }
  }

  /// The signature of `examples` on `model` (the base alone).
  public static func of(_ examples: [Example], model: LlamaModel, baseFingerprint: String) -> RouteSignature {
    compute(
      prompts: prompts(of: examples), model: model, baseFingerprint: baseFingerprint, maxTokens: promptTokens)
  }
}
