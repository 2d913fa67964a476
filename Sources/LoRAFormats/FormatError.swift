/// Why a model file could not be read. Every case names the file and what was expected.
public enum FormatError: Error, Equatable, CustomStringConvertible {
  /// The file could not be opened or mapped (`reason` is the system's).
  case unreadable(file: String, reason: String)
  /// The file ends before a structure it declares (`what` names the structure).
  case truncated(file: String, what: String, offset: Int)
  /// The file's content breaks the format (`message` says how).
  case invalid(file: String, message: String)
  /// A valid file using something this reader does not support.
  case unsupported(file: String, message: String)
  /// The file could not be written (`reason` is the system's, or what was refused).
  case unwritable(file: String, reason: String)

  public var description: String {
    switch self {
    case .unreadable(let file, let reason): return "\(file): cannot read: \(reason)"
    case .truncated(let file, let what, let offset):
      return "\(file): truncated: the file ends inside \(what) (at byte \(offset))"
    case .invalid(let file, let message): return "\(file): \(message)"
    case .unsupported(let file, let message): return "\(file): unsupported: \(message)"
    case .unwritable(let file, let reason): return "\(file): cannot write: \(reason)"
    }
  }
}
