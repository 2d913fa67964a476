import ArgumentParser
import Foundation

/// A `NAME=PATH` option value (`--adapter devil=out/devil`); a bare PATH is named by its
/// last component without extension (out/devil → devil, a.gguf → a).
enum NamedPath {
  static func parse(_ entry: String, option: String) throws -> (name: String, path: String) {
    if let equals = entry.firstIndex(of: "="), !entry[..<equals].contains("/") {
      let (name, path) = (String(entry[..<equals]), String(entry[entry.index(after: equals)...]))
      guard !name.isEmpty, !path.isEmpty else {
        throw ValidationError("\(option) \(entry): expected NAME=PATH with neither empty")
      }
      return (name, path)
    }
    let url = URL(fileURLWithPath: entry)
    let name = url.deletingPathExtension().lastPathComponent
    guard !name.isEmpty else { throw ValidationError("\(option) \(entry): expected NAME=PATH or a PATH") }
    return (name, entry)
  }
}
