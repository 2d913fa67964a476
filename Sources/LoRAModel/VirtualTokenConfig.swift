/// Prompt or prefix tuning, as PEFT defines them: `tokens` virtual tokens before every
/// sequence, trained alone or in one adapter with LoRA.
///
/// - `prompt` (PEFT's PROMPT_TUNING, "prefix-embedding tuning"): N trainable embeddings
///   prepended to the input; they run through every layer as tokens at positions 0..<N.
/// - `prefix` (PEFT's PREFIX_TUNING, "prefix-layer tuning"): trainable keys and values for
///   every layer, [N, L·2·KVH·HS] in PEFT's layout (layer l's keys at columns 2l·KVW, its values
///   at (2l+1)·KVW, KVW = KVH·HS), seen by every query and never rotated; the real tokens sit
///   at positions N.. . With `projection` H (PEFT's `prefix_projection` with
///   `encoder_hidden_size`) the table is reparameterised as tanh(E·W1ᵀ + b1)·W2ᵀ + b2 with E
///   [N, KVW], W1 [H, KVW], b1 [H], W2 [L·2·KVW, H], b2 [L·2·KVW] (PEFT's token_dim is KVW
///   on a model with key/value heads, as Llama's config always names them).
public struct VirtualTokenConfig: Codable, Equatable, Sendable {
  public enum Kind: String, Codable, Sendable, CaseIterable {
    case prompt
    case prefix
  }

  public var kind: Kind
  /// N, PEFT's num_virtual_tokens.
  public var tokens: Int
  /// H of the reparameterisation MLP (prefix only); nil: none.
  public var projection: Int?

  public init(kind: Kind, tokens: Int, projection: Int? = nil) {
    self.kind = kind
    self.tokens = tokens
    self.projection = projection
  }

  /// Checks what can be checked without a model.
  public func validate() throws {
    guard tokens >= 1 else {
      throw LoRAConfigError("num_virtual_tokens must be at least 1, got \(tokens)")
    }
    if let projection {
      guard kind == .prefix else {
        throw LoRAConfigError(
          "a projection (prefix_projection) applies to prefix tuning only, not to prompt tuning")
      }
      guard projection >= 1 else {
        throw LoRAConfigError("the prefix projection's hidden size must be at least 1, got \(projection)")
      }
    }
  }

  /// Positions the virtual tokens take from the context: N for both kinds (prompt tokens
  /// are rows of the sequence; prefix keys sit before the real tokens' positions).
  public var positions: Int { tokens }

  /// Columns of the prefix table: L·2·KVH·HS.
  public static func prefixWidth(_ c: LlamaConfig) -> Int { c.layers * 2 * c.kvHeads * c.headSize }

  /// Trainable parameters: prompt N·D; prefix N·W; prefix with projection
  /// N·KVW + H·KVW + H + W·H + W (W = L·2·KVW).
  public func parameterCount(_ c: LlamaConfig) -> Int {
    let width = VirtualTokenConfig.prefixWidth(c)
    let kvWidth = c.kvHeads * c.headSize
    switch (kind, projection) {
    case (.prompt, _): return tokens * c.hiddenSize
    case (.prefix, nil): return tokens * width
    case (.prefix, let h?): return tokens * kvWidth + h * kvWidth + h + width * h + width
    }
  }

  /// Columns of the trained embedding E: D (prompt), W (prefix), KVW (prefix with projection).
  public func embeddingWidth(_ c: LlamaConfig) -> Int {
    switch (kind, projection) {
    case (.prompt, _): return c.hiddenSize
    case (.prefix, nil): return VirtualTokenConfig.prefixWidth(c)
    case (.prefix, _?): return c.kvHeads * c.headSize
    }
  }

  /// "prompt tuning, 8 virtual tokens" and the like.
  public var summary: String {
    let name = kind == .prompt ? "prompt tuning" : "prefix tuning"
    return "\(name), \(tokens) virtual token\(tokens == 1 ? "" : "s")"
      + (projection.map { ", projection \($0)" } ?? "")
  }
}
