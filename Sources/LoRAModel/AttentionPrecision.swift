import LoRAKernels

/// How a user asks attention's products to run (`--attention-precision`, the job-file and
/// `train --config` key `attention_precision`): `auto` follows the base (bf16 with a bf16
/// base on oneDNN's route, fp32 otherwise: `LlamaModel.attentionRoute`); `bf16` and `f32`
/// force one. Generation with a KV cache runs fp32 attention whatever is asked.
public enum AttentionPrecision: String, Codable, CaseIterable, Sendable, CustomStringConvertible {
  case auto
  case bf16
  case f32

  public var description: String { rawValue }

  /// The model's `attentionPrecision` for this choice: nil (follow the base) for `auto`.
  ///
  /// - Throws: `ModelError.bf16AttentionUnavailable` for `bf16` where oneDNN has no bf16
  ///   kernel for attention's products (no AVX-512, or only its reference loops).
  public func resolve() throws(ModelError) -> Attention.Precision? {
    switch self {
    case .auto: return nil
    case .f32: return .f32
    case .bf16:
      guard Attention.bf16Available else {
        throw .bf16AttentionUnavailable(
          reason: "oneDNN \(BF16MatMul.libraryVersion) has no fast bf16 matrix products on this CPU "
            + "(it offers \(BF16MatMul.instructionSet))")
      }
      return .bf16
    }
  }
}
