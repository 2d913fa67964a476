import Foundation

/// Why the adapter store or the serving engine refused something. Each case names the
/// adapter, file or field; `status` is the HTTP status the server answers with.
public enum ServeError: Error, Equatable, Sendable, CustomStringConvertible {
  /// No adapter (and not the base, nor "auto") of this name is loaded.
  case unknownModel(name: String, available: [String])
  /// The adapter's checkpoint was trained on a base with another fingerprint.
  case wrongBase(name: String, adapterBase: String, servedBase: String)
  /// The adapter does not fit the base (shapes, layers).
  case incompatible(name: String, reason: String)
  /// The path is not an adapter, or could not be read.
  case invalidAdapter(path: String, reason: String)
  /// An adapter of this name is already loaded.
  case duplicateName(String)
  /// Adapter names: letters, digits, '.', '_', '-', '/' and ':' (1 to 128 characters), not
  /// the base's name and not "auto".
  case invalidName(String)
  /// The prompt plus max_tokens does not fit the context.
  case promptTooLong(prompt: Int, maxTokens: Int, context: Int)
  /// The prompt encodes to no tokens.
  case emptyPrompt
  /// A request field holds a value out of range.
  case invalidField(field: String, reason: String)
  /// The engine stopped accepting requests (shutting down).
  case shuttingDown
  /// The queue holds as many requests as it may.
  case queueFull(limit: Int)

  /// The HTTP status this error is answered with.
  public var status: Int {
    switch self {
    case .unknownModel: return 404
    case .wrongBase, .incompatible, .duplicateName: return 409
    case .invalidAdapter, .invalidName, .promptTooLong, .emptyPrompt, .invalidField: return 400
    case .shuttingDown: return 503
    case .queueFull: return 429
    }
  }

  public var description: String {
    switch self {
    case .unknownModel(let name, let available):
      return "model '\(name)' is not loaded; loaded: \(available.joined(separator: ", "))"
    case .wrongBase(let name, let adapterBase, let servedBase):
      return
        "adapter '\(name)' was trained on base \(adapterBase), but the served base is \(servedBase); nothing was loaded"
    case .incompatible(let name, let reason):
      return "adapter '\(name)' does not fit the served base: \(reason); nothing was loaded"
    case .invalidAdapter(let path, let reason):
      return "\(path): \(reason)"
    case .duplicateName(let name):
      return "an adapter named '\(name)' is already loaded; unload it first or choose another name"
    case .invalidName(let name):
      return
        "adapter name '\(name)' is not allowed: use 1 to 128 letters, digits, '.', '_', '-', '/' or ':', "
        + "other than the base's name and 'auto'"
    case .promptTooLong(let prompt, let maxTokens, let context):
      // max_tokens is the client's and may be near Int.max: no sum that could overflow.
      return
        "the prompt has \(prompt) tokens and max_tokens is \(maxTokens): together they exceed the context of "
        + "\(context) tokens (at most \(max(0, context - prompt)) tokens can be generated after this prompt)"
    case .emptyPrompt:
      return "the prompt encodes to no tokens"
    case .invalidField(let field, let reason):
      return "'\(field)': \(reason)"
    case .shuttingDown:
      return "the server is shutting down and accepts no new requests"
    case .queueFull(let limit):
      return "the server already holds \(limit) requests; try again later"
    }
  }
}
