import LoRAKernels

/// How a user asks for the frozen base to be held (`--base-precision`, the job key
/// `base_precision`): `auto` is bf16 where the CPU multiplies bf16 natively (AVX512_BF16 or
/// AMX, through oneDNN) and fp32 elsewhere; `bf16` and `f32` force one.
public enum BasePrecision: String, Codable, CaseIterable, Sendable, CustomStringConvertible {
  case auto
  case bf16
  case f32

  public var description: String { rawValue }

  /// The precision to hold the base in on this CPU. An explicit `bf16` on a CPU without
  /// native bf16 still stores bf16 (half the memory) and widens each weight block to fp32
  /// for its products (`BF16Products.Route.widened`), provided oneDNN supports bf16 here.
  ///
  /// - Throws: `ModelError.bf16Unavailable` for `bf16` where oneDNN has no bf16 products
  ///   (no AVX-512), or when its probe product fails.
  public func resolve() throws(ModelError) -> StoredPrecision {
    switch self {
    case .f32:
      return .f32
    case .auto:
      guard BF16MatMul.nativeBF16 else { return .f32 }
    case .bf16:
      guard BF16MatMul.available else {
        throw .bf16Unavailable(
          reason: "oneDNN \(BF16MatMul.libraryVersion) has no bf16 matrix products on this CPU "
            + "(it offers \(BF16MatMul.instructionSet); bf16 needs AVX-512)")
      }
    }
    do {
      try BF16Products.check()
    } catch {
      throw .bf16Unavailable(reason: "\(error)")
    }
    return .bf16
  }
}
