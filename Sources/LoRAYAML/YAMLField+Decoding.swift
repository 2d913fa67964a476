import Foundation
import Yams

extension YAMLField {
  /// This node decoded as `T` through Yams' Codable support. A value of the wrong type fails
  /// with its file, line and key path, the type the setting takes and what was written:
  /// `jobs.yaml:5: adapters[0].rank: expected an integer, got 'eight'`.
  package func decode<T: Decodable>(_ type: T.Type) throws -> T {
    do {
      return try YAMLDecoder().decode(type, from: node)
    } catch let error as DecodingError {
      throw located(error, decoding: type)
    }
  }

  /// A mapping of `pairs` (their values keep their lines), at the root of their file.
  package static func mapping(_ pairs: [(key: String, field: YAMLField)]) -> YAMLField {
    YAMLField(
      node: Node(pairs.map { (Node($0.key), $0.field.node) }), file: pairs.first?.field.file ?? "", path: "")
  }

  /// The value at `keyPath` beneath this mapping (map keys, then list indices as digits),
  /// else the deepest node on the way there.
  package func field(at keyPath: [String]) -> YAMLField {
    var field = self
    for key in keyPath {
      if let index = Int(key), let list = try? field.list(), list.indices.contains(index) {
        field = list[index]
      } else if let found = (try? field.entries())?.first(where: { $0.key == key }) {
        field = found.field
      } else {
        break
      }
    }
    return field
  }

  /// An invalid value at `keyPath` beneath this mapping, located at its line.
  package func invalid(at keyPath: [String], _ message: String) -> SettingsFileError {
    field(at: keyPath).error(.invalidValue, message)
  }

  /// `error` located at the value it is about; the expected type is found by decoding a
  /// probe there (a scalar that is no number, flag or date) when Yams only says that it
  /// wanted a scalar.
  private func located<T: Decodable>(_ error: DecodingError, decoding type: T.Type) -> SettingsFileError {
    let (path, expected): ([CodingKey], Any.Type?) =
      switch error {
      case .typeMismatch(let expected, let context): (context.codingPath, expected)
      case .valueNotFound(let expected, let context): (context.codingPath, expected)
      case .keyNotFound(let key, let context): (context.codingPath + [key], nil)
      case .dataCorrupted(let context): (context.codingPath, nil)
      @unknown default: ([], nil)
      }
    let keys = path.map { $0.intValue.map(String.init) ?? $0.stringValue }
    let target = field(at: keys)
    // A setting's own decoder may say what it takes ("expected a rank … or auto").
    let told: String? =
      if case .dataCorrupted(let context) = error, context.debugDescription.hasPrefix("expected ") {
        String(context.debugDescription.dropFirst("expected ".count))
      } else { nil }
    let wanted =
      if let told { told } else if let expected, !(expected is Node.Scalar.Type) {
        Self.name(of: expected)
      } else {
        Self.probe(type, at: path)
      }
    return target.error(.wrongType, "expected \(wanted ?? "another value"), got \(target.describe())")
  }

  /// What `type` takes at `path`: decodes a document holding only a probe scalar there.
  private static func probe<T: Decodable>(_ type: T.Type, at path: [CodingKey]) -> String? {
    var node = Node("\u{1}", Tag(.str))
    for key in path.reversed() {
      if key.intValue != nil {
        node = Node([node])
      } else {
        node = Node([(Node(key.stringValue), node)])
      }
    }
    do {
      _ = try YAMLDecoder().decode(type, from: node)
      return "a string"
    } catch DecodingError.typeMismatch(let expected, _) {
      return expected is Node.Scalar.Type ? nil : name(of: expected)
    } catch {
      return nil
    }
  }

  /// How an error names the type a setting takes.
  private static func name(of type: Any.Type) -> String {
    switch type {
    case is Int.Type, is Int32.Type: "an integer"
    case is UInt64.Type, is UInt.Type: "a non-negative integer"
    case is Double.Type, is Float.Type: "a number"
    case is Bool.Type: "true or false"
    case is String.Type: "a string"
    case is Node.Sequence.Type: "a list"
    case is Node.Mapping.Type: "a mapping"
    default: "\(type)"
    }
  }
}
