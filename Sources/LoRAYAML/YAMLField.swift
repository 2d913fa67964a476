import Foundation
import Yams

/// One YAML node with its key path, read with typed accessors or decoded through Yams'
/// Codable support (`decode`), with errors that name the file, line and key path. Job files
/// and `train --config` files are read through it.
package struct YAMLField {
  package let node: Node
  package let file: String
  package let path: String

  package var origin: Origin { Origin(file: file, line: node.mark?.line, keyPath: path) }

  package func error(_ kind: SettingsFileError.Kind, _ message: String) -> SettingsFileError {
    origin.error(kind, message)
  }

  var isNull: Bool {
    guard let scalar = node.scalar else { return false }
    return scalar.style == .plain && ["", "~", "null", "Null", "NULL"].contains(scalar.string)
  }

  private func scalarText(_ expected: String) throws -> String {
    guard let scalar = node.scalar, !isNull else {
      throw error(.wrongType, "expected \(expected), got \(describe())")
    }
    return scalar.string
  }

  func describe() -> String {
    if isNull { return "nothing" }
    switch node {
    case .scalar(let s): return "'\(s.string)'"
    case .mapping: return "a mapping"
    case .sequence: return "a list"
    case .alias: return "an alias"
    }
  }

  package func string() throws -> String { try scalarText("a string") }

  package func int() throws -> Int {
    let text = try scalarText("an integer")
    guard let value = node.int ?? Int(text) else {
      throw error(.wrongType, "expected an integer, got '\(text)'")
    }
    return value
  }

  package func double() throws -> Double {
    let text = try scalarText("a number")
    guard let value = node.float ?? Double(text), value.isFinite else {
      throw error(.wrongType, "expected a number, got '\(text)'")
    }
    return value
  }

  package func bool() throws -> Bool {
    let text = try scalarText("true or false")
    guard let value = node.bool else { throw error(.wrongType, "expected true or false, got '\(text)'") }
    return value
  }

  /// The elements of a list.
  package func list() throws -> [YAMLField] {
    guard let sequence = node.sequence else { throw error(.wrongType, "expected a list, got \(describe())") }
    return sequence.enumerated().map { YAMLField(node: $1, file: file, path: "\(path)[\($0)]") }
  }

  /// The entries of a mapping in file order; a key given twice is an error.
  package func entries() throws -> [(key: String, field: YAMLField)] {
    guard let mapping = node.mapping else { throw error(.wrongType, "expected a mapping, got \(describe())") }
    var seen: Set<String> = []
    var result: [(key: String, field: YAMLField)] = []
    for (keyNode, value) in mapping {
      let key = keyNode.string ?? "?"
      let keyPath = path.isEmpty ? key : "\(path).\(key)"
      guard seen.insert(key).inserted else {
        throw Origin(file: file, line: keyNode.mark?.line, keyPath: keyPath).error(
          .duplicateKey, "key given twice")
      }
      // Errors about the key itself (unknown, duplicate) point at the key's line.
      result.append((key, YAMLField(node: value, file: file, path: keyPath, keyLine: keyNode.mark?.line)))
    }
    return result
  }

  /// Line of the key this value belongs to (for unknown-key errors).
  package var keyLine: Int?

  /// The root of a YAML document, nil when the text holds none; syntax errors and keys given
  /// twice name the file and line.
  package static func document(_ text: String, path: String) throws -> YAMLField? {
    let node: Node?
    do { node = try Yams.compose(yaml: text) } catch let error as YamlError {
      throw syntaxError(error, text: text, path: path)
    } catch {
      throw SettingsFileError(.unreadable, file: path, line: nil, keyPath: nil, "not valid YAML: \(error)")
    }
    return node.map { YAMLField(node: $0, file: path, path: "") }
  }

  package init(node: Node, file: String, path: String, keyLine: Int? = nil) {
    self.node = node
    self.file = file
    self.path = path
    self.keyLine = keyLine
  }

  /// An error about the key (not the value): reported at the key's line.
  package func keyError(_ kind: SettingsFileError.Kind, _ message: String) -> SettingsFileError {
    SettingsFileError(kind, file: file, line: keyLine ?? node.mark?.line, keyPath: path, message)
  }

  /// Fails on a key outside `allowed`, naming the allowed keys (or with `message`).
  package static func checkKeys(
    _ entries: [(key: String, field: YAMLField)], allowed: [String], what: String, message: String? = nil
  ) throws {
    let set = Set(allowed)
    for (key, field) in entries where !set.contains(key) {
      throw field.keyError(
        .unknownKey, message ?? "unknown key; the \(what) are \(allowed.joined(separator: ", "))")
    }
  }
}
