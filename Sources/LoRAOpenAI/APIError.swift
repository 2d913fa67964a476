import Foundation
import LoRAServe

/// An error answered in OpenAI's shape:
/// `{"error": {"message": …, "type": …, "param": …, "code": …}}` with its HTTP status.
public struct APIError: Error, Sendable, Equatable, CustomStringConvertible {
  public var statusCode: Int
  public var message: String
  /// "invalid_request_error", "not_found_error", "conflict_error", "server_error", …
  public var type: String
  /// The request field at fault (a coding path such as `messages[0].content`), if any.
  public var param: String?
  /// A short machine-readable code ("model_not_found", "context_length_exceeded", …).
  public var code: String?

  public init(status: Int, message: String, type: String? = nil, param: String? = nil, code: String? = nil) {
    statusCode = status
    self.message = message
    self.type = type ?? APIError.type(for: status)
    self.param = param
    self.code = code
  }

  public var description: String { "\(statusCode) \(message)" }

  /// The body as bytes.
  public var json: Data {
    struct Inner: Encodable {
      var message: String
      var type: String
      var param: String?
      var code: String?
      func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(message, forKey: .message)
        try c.encode(type, forKey: .type)
        try c.encode(param, forKey: .param)  // null when absent, as OpenAI
        try c.encode(code, forKey: .code)
      }
      enum CodingKeys: String, CodingKey { case message, type, param, code }
    }
    struct Outer: Encodable { var error: Inner }
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return (try? encoder.encode(Outer(error: Inner(message: message, type: type, param: param, code: code))))
      ?? Data()
  }

  static func type(for status: Int) -> String {
    switch status {
    case 400, 413, 422: return "invalid_request_error"
    case 404: return "not_found_error"
    case 409: return "conflict_error"
    case 429: return "rate_limit_error"
    case 503: return "service_unavailable"
    default: return status >= 500 ? "server_error" : "invalid_request_error"
    }
  }

  /// A serving error with its own status (`ServeError.status`) and message.
  public init(_ error: ServeError) {
    var param: String?
    let code: String
    switch error {
    case .unknownModel:
      param = "model"
      code = "model_not_found"
    case .wrongBase: code = "wrong_base"
    case .incompatible: code = "incompatible_adapter"
    case .invalidAdapter:
      param = "path"
      code = "invalid_adapter"
    case .duplicateName:
      param = "name"
      code = "duplicate_name"
    case .invalidName:
      param = "name"
      code = "invalid_name"
    case .promptTooLong:
      param = "prompt"
      code = "context_length_exceeded"
    case .emptyPrompt:
      param = "prompt"
      code = "empty_prompt"
    case .invalidField(let field, _):
      param = field
      code = "invalid_value"
    case .shuttingDown: code = "shutting_down"
    case .queueFull: code = "queue_full"
    }
    self.init(status: error.status, message: error.description, param: param, code: code)
  }

  /// A body that does not decode: 400 naming the field by its coding path.
  public init(decoding error: DecodingError) {
    switch error {
    case .typeMismatch(let type, let context):
      let path = APIError.path(context.codingPath)
      self.init(
        status: 400,
        message: "'\(path)': expected \(APIError.typeName(type)) (\(context.debugDescription))",
        param: path, code: "invalid_type")
    case .valueNotFound(let type, let context):
      let path = APIError.path(context.codingPath)
      self.init(
        status: 400, message: "'\(path)': expected \(APIError.typeName(type)), found null", param: path,
        code: "invalid_type")
    case .keyNotFound(let key, let context):
      let path = APIError.path(context.codingPath + [key])
      self.init(status: 400, message: "'\(path)' is required", param: path, code: "missing_field")
    case .dataCorrupted(let context):
      if context.codingPath.isEmpty {
        let detail = (context.underlyingError as? NSError)?.userInfo[NSDebugDescriptionErrorKey] as? String
        self.init(
          status: 400, message: "the request body is not valid JSON: \(detail ?? context.debugDescription)",
          code: "invalid_json")
      } else {
        let path = APIError.path(context.codingPath)
        self.init(
          status: 400, message: "'\(path)': \(context.debugDescription)", param: path, code: "invalid_value")
      }
    @unknown default:
      self.init(status: 400, message: "the request body does not decode: \(error)", code: "invalid_json")
    }
  }

  /// `messages[0].content` from a coding path.
  static func path(_ keys: [any CodingKey]) -> String {
    var text = ""
    for key in keys {
      if let index = key.intValue {
        text += "[\(index)]"
      } else {
        text += text.isEmpty ? key.stringValue : "." + key.stringValue
      }
    }
    return text.isEmpty ? "(body)" : text
  }

  static func typeName(_ type: Any.Type) -> String {
    switch type {
    case is String.Type: return "a string"
    case is Bool.Type: return "a boolean"
    case is Int.Type, is Int32.Type, is Int64.Type, is UInt64.Type: return "an integer"
    case is Double.Type, is Float.Type: return "a number"
    case is [String].Type: return "a string or a list of strings"
    default:
      let name = "\(type)"
      if name.hasPrefix("Array") || name.hasPrefix("[") { return "a list" }
      if name.hasPrefix("Dictionary") { return "an object" }
      return "an object"
    }
  }

  /// Decodes `T` from a JSON body; every failure is a 400 naming the field.
  public static func decode<T: Decodable>(_ type: T.Type, from data: Data) throws(APIError) -> T {
    guard !data.isEmpty else {
      throw APIError(
        status: 400, message: "the request body is empty; expected a JSON object", code: "invalid_json")
    }
    do {
      return try JSONDecoder().decode(type, from: data)
    } catch let error as DecodingError {
      throw APIError(decoding: error)
    } catch {
      throw APIError(status: 400, message: "the request body does not decode: \(error)", code: "invalid_json")
    }
  }
}
