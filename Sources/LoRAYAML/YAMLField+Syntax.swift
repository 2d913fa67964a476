import Foundation
import Yams

extension YAMLField {
  /// A YAML syntax error with its line; a key given twice with the line of its second use.
  static func syntaxError(_ error: YamlError, text: String, path: String) -> SettingsFileError {
    switch error {
    case .duplicatedKeysInMapping(let duplicates, let context):
      let key = duplicates.sorted().first ?? "?"
      let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
      let uses = lines.indices.filter { i in
        i + 1 >= context.mark.line
          && lines[i].range(
            of: "(^|[\\s{,-])\(NSRegularExpression.escapedPattern(for: key))\\s*:",
            options: .regularExpression)
            != nil
      }
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
}
