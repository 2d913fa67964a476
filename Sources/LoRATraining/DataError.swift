/// Why a dataset could not be read. Messages name the file and, where there is one, the line.
public enum DataError: Error, Equatable, CustomStringConvertible {
  /// A line is not valid JSON or not an object of a known format.
  case badLine(file: String, line: Int, message: String)
  /// The file has no usable example.
  case empty(file: String, message: String)
  /// The file cannot be read.
  case unreadable(file: String, reason: String)
  /// An option is out of range.
  case invalidOption(String)

  public var description: String {
    switch self {
    case .badLine(let file, let line, let message): return "\(file):\(line): \(message)"
    case .empty(let file, let message): return "\(file): \(message)"
    case .unreadable(let file, let reason): return "\(file): cannot read: \(reason)"
    case .invalidOption(let message): return message
    }
  }
}
