/// A settings file (a job file, `train --config`), or a plan made from it, that cannot be
/// used. The description names the file, the line and the key path:
/// `jobs.yaml:14: adapters[2].lerning_rate: unknown key; …`.
public struct SettingsFileError: Error, Equatable, Sendable, CustomStringConvertible {
  /// What went wrong, for callers and tests that branch on it.
  public enum Kind: String, Sendable, Codable {
    /// The file cannot be read or is not YAML.
    case unreadable
    /// A key the schema does not have.
    case unknownKey
    /// The same key twice in one mapping.
    case duplicateKey
    /// A required key is absent.
    case missingKey
    /// A value of the wrong type (a list where a number belongs, …).
    case wrongType
    /// A value out of range or not one of the allowed names.
    case invalidValue
    /// Two adapters with one name (also after sweep expansion).
    case duplicateName
    /// A model, data or validation file that does not exist.
    case missingFile
    /// Two adapters writing to one output folder (or one inside the other).
    case sharedOutput
    /// Settings that contradict each other (a grouped adapter placed `separate`, …).
    case conflict
    /// More rank groups than ranks, or a group that cannot be given the ranks it asks for.
    case tooFewRanks
  }

  public var kind: Kind
  /// The job file as it was named.
  public var file: String
  /// 1-based line of the offending key or value, when known.
  public var line: Int?
  /// Where in the file: `adapters[2].lr`, `defaults.rank`, `sweep.rank[1]`.
  public var keyPath: String?
  public var message: String

  public init(_ kind: Kind, file: String, line: Int?, keyPath: String?, _ message: String) {
    self.kind = kind
    self.file = file
    self.line = line
    self.keyPath = keyPath
    self.message = message
  }

  public var description: String {
    file + (line.map { ":\($0)" } ?? "") + ": " + (keyPath.map { "\($0): " } ?? "") + message
  }
}

/// Where a value came from: the file, its line and key path (for errors raised after merging).
public struct Origin: Equatable, Sendable, Codable {
  public var file: String
  public var line: Int?
  public var keyPath: String

  public init(file: String, line: Int?, keyPath: String) {
    self.file = file
    self.line = line
    self.keyPath = keyPath
  }

  /// An error located here.
  public func error(_ kind: SettingsFileError.Kind, _ message: String) -> SettingsFileError {
    SettingsFileError(kind, file: file, line: line, keyPath: keyPath, message)
  }
}
