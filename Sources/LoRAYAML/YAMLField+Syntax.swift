import Foundation
import Yams

extension YAMLField {
  /// A YAML syntax error with its line; a key given twice with the line of its second use.
  static func syntaxError(_ error: YamlError, text: String, path: String) -> SettingsFileError {
    switch error {
    case .duplicatedKeysInMapping(let duplicates, let context):
      let key = duplicates.sorted().first ?? "?"
      let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
      let uses = lines.indices.filter { i in i + 1 >= context.mark.line && Self.line(lines[i], setsKey: key) }
      return SettingsFileError(
        .duplicateKey, file: path, line: uses.count > 1 ? uses[1] + 1 : context.mark.line, keyPath: key,
        "key given twice in one mapping")
    case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _),
      .composer(_, let problem, let mark, _):
      return SettingsFileError(
        .unreadable, file: path, line: mark.line, keyPath: nil, "not valid YAML: \(problem)")
    default:
      return SettingsFileError(.unreadable, file: path, line: nil, keyPath: nil, "not valid YAML: \(error)")
    }
  }

  /// Whether `line` sets `key`: the key at the start or after whitespace, '{', ',' or '-',
  /// then optional blanks and ':'. Plain string search: Foundation's regular expressions
  /// leaked each compiled pattern (found by fuzzing `train --config` files), and a key is
  /// the file's text.
  static func line(_ line: Substring, setsKey key: String) -> Bool {
    guard !key.isEmpty else { return false }
    for found in line.ranges(of: key) {
      let before = found.lowerBound == line.startIndex ? nil : line[line.index(before: found.lowerBound)]
      guard before.map({ $0.isWhitespace || "{,-".contains($0) }) ?? true else { continue }
      if line[found.upperBound...].drop(while: { $0 == " " || $0 == "\t" }).first == ":" { return true }
    }
    return false
  }
}
