/// A run that cannot start as asked: its settings, its output folder or its data. The
/// message names the flag or key, the file, and what was expected.
public struct RunError: Error, Equatable, CustomStringConvertible {
  public var description: String
  public init(_ description: String) { self.description = description }
}
