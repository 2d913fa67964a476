import Foundation
import LoRAServe
import Testing

@testable import LoRAOpenAI
@testable import LoRAServeHTTP

/// Request bodies that do not decode answer 400 naming the field by its coding path.
struct RequestDecodingTests {
  func decodeError<T: Decodable>(_ type: T.Type, _ json: String) -> APIError? {
    do {
      _ = try APIError.decode(type, from: Data(json.utf8))
      return nil
    } catch {
      return error
    }
  }

  @Test func wrongTypeNamesTheField() throws {
    let error = try #require(
      decodeError(CompletionBody.self, #"{"model": "a", "prompt": "x", "max_tokens": "ten"}"#))
    #expect(error.statusCode == 400)
    #expect(error.param == "max_tokens")
    #expect(error.message.contains("'max_tokens': expected an integer"), "\(error.message)")
  }

  @Test func missingFieldNamesIt() throws {
    let error = try #require(decodeError(CompletionBody.self, #"{"prompt": "x"}"#))
    #expect(error.statusCode == 400 && error.param == "model")
    #expect(error.message == "'model' is required")
  }

  @Test func nestedPathsUseIndexes() throws {
    let error = try #require(
      decodeError(
        ChatCompletionBody.self,
        #"{"model": "a", "messages": [{"role": "user", "content": "hi"}, {"role": 3, "content": "x"}]}"#))
    #expect(error.param == "messages[1].role", "\(error.message)")
    let parts = try #require(
      decodeError(
        ChatCompletionBody.self,
        #"{"model": "a", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}"#))
    #expect(parts.param == "messages[0].content[0]", "\(parts.message)")
  }

  @Test func malformedJSONIsSaidSo() throws {
    let error = try #require(decodeError(CompletionBody.self, #"{"model": "#))
    #expect(error.statusCode == 400 && error.param == nil && error.code == "invalid_json")
    #expect(error.message.contains("not valid JSON"))
    let empty = try #require(decodeError(CompletionBody.self, ""))
    #expect(empty.message.contains("empty"))
  }

  @Test func promptAndStopTakeTheirOpenAIShapes() throws {
    let one = try APIError.decode(
      CompletionBody.self, from: Data(#"{"model": "m", "prompt": "hi", "stop": "\n"}"#.utf8))
    #expect(one.prompt == .text("hi") && one.stop?.strings == ["\n"])
    let list = try APIError.decode(
      CompletionBody.self,
      from: Data(#"{"model": "m", "prompt": ["hi"], "stop": ["a", "b"], "top_p": 0.5}"#.utf8))
    #expect(list.prompt == .text("hi") && list.stop?.strings == ["a", "b"] && list.topP == 0.5)
    let ids = try APIError.decode(
      CompletionBody.self, from: Data(#"{"model": "m", "prompt": [1, 2, 3]}"#.utf8))
    #expect(ids.prompt == .tokens([1, 2, 3]))
    let two = try #require(decodeError(CompletionBody.self, #"{"model": "m", "prompt": ["a", "b"]}"#))
    #expect(two.param == "prompt" && two.message.contains("one prompt per request"))
    let badStop = try #require(decodeError(CompletionBody.self, #"{"model": "m", "prompt": "a", "stop": 5}"#))
    #expect(badStop.param == "stop")
  }

  @Test func chatContentPartsJoin() throws {
    let body = try APIError.decode(
      ChatCompletionBody.self,
      from: Data(
        #"{"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}], "max_completion_tokens": 4}"#
          .utf8))
    #expect(body.messages == [ChatMessageBody(role: "user", content: "ab")] && body.maxCompletionTokens == 4)
  }

  @Test func serveErrorsKeepTheirStatus() {
    let unknown = APIError(ServeError.unknownModel(name: "x", available: ["base", "a"]))
    #expect(unknown.statusCode == 404 && unknown.type == "not_found_error" && unknown.message.contains("'x'"))
    let wrongBase = APIError(ServeError.wrongBase(name: "a", adapterBase: "sha256:1", servedBase: "sha256:2"))
    #expect(
      wrongBase.statusCode == 409 && wrongBase.message.contains("sha256:1")
        && wrongBase.message.contains("sha256:2"))
    let long = APIError(ServeError.promptTooLong(prompt: 100, maxTokens: 50, context: 128))
    #expect(long.statusCode == 400 && long.code == "context_length_exceeded" && long.message.contains("100"))
  }

  @Test func errorBodyHasOpenAIsShape() throws {
    let body = APIError(status: 400, message: "m", param: "p", code: "c").json
    let object = try #require(try JSONSerialization.jsonObject(with: body) as? [String: [String: Any]])
    let error = try #require(object["error"])
    #expect(error["message"] as? String == "m" && error["type"] as? String == "invalid_request_error")
    #expect(error["param"] as? String == "p" && error["code"] as? String == "c")
    let noParam =
      try JSONSerialization.jsonObject(with: APIError(status: 500, message: "x").json)
      as? [String: [String: Any]]
    #expect(noParam?["error"]?["param"] is NSNull)
  }

  @Test func metricsAreValidExposition() throws {
    // The stats types have no public memberwise initializers: decode them.
    let stats = try JSONDecoder().decode(
      EngineStats.self,
      from: Data(
        #"{"perModel": {"a\"b": {"requests": 2, "promptTokens": 10, "generatedTokens": 5, "cancelled": 1}}, "queueDepth": 0, "active": 0, "steps": 3, "stepRows": 3, "routed": 0, "routedToBase": 0}"#
          .utf8))
    let store = try JSONDecoder().decode(
      StoreStats.self, from: Data(#"{"hits": 1, "misses": 2, "evictions": 0, "residentBytes": 64}"#.utf8))
    let text = PrometheusText.render(engine: stats, store: store, adapters: [])
    #expect(text.contains(#"sld_requests_total{model="a\"b"} 2"#))
    #expect(
      text.contains("sld_decode_steps_total 3\n") && text.contains("sld_adapter_cache_misses_total 2\n"))
    #expect(text.contains("# TYPE sld_queue_depth gauge"))
    #expect(!text.contains("sld_adapter_budget_bytes"))
  }
}
