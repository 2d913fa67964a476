/// Why a model could not be loaded or run. Messages name the file and what was expected.
public enum ModelError: Error, Equatable, CustomStringConvertible {
  /// The architecture is not a Llama-family decoder this project runs.
  case unsupportedArchitecture(file: String, architecture: String)
  /// A configuration field is missing or out of range.
  case invalidConfig(file: String, message: String)
  /// A weight is missing or its shape disagrees with the configuration.
  case weightMismatch(file: String, message: String)
  /// `--base-precision bf16` where the bf16 path cannot run.
  case bf16Unavailable(reason: String)
  /// `--attention-precision bf16` where attention's bf16 products have no kernel.
  case bf16AttentionUnavailable(reason: String)

  public var description: String {
    switch self {
    case .unsupportedArchitecture(let file, let architecture):
      return "\(file): architecture '\(architecture)' is not a Llama-family decoder "
        + "(supported: \(LlamaConfig.supportedArchitectures.joined(separator: ", ")))"
    case .invalidConfig(let file, let message): return "\(file): \(message)"
    case .weightMismatch(let file, let message): return "\(file): \(message)"
    case .bf16Unavailable(let reason):
      return "--base-precision bf16 cannot be used here: \(reason); use --base-precision f32 (or auto)"
    case .bf16AttentionUnavailable(let reason):
      return
        "--attention-precision bf16 cannot be used here: \(reason); use --attention-precision f32 (or auto)"
    }
  }
}
