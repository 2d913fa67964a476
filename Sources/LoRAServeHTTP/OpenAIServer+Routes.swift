import Foundation
import Hummingbird
import LoRAOpenAI
import LoRAServe

extension OpenAIServer {
  /// Every route:
  ///
  ///     POST   /v1/completions        text completion (stream: server-sent events)
  ///     POST   /v1/chat/completions   chat completion, ChatML (stream: server-sent events)
  ///     GET    /v1/models             the base and every adapter
  ///     POST   /v1/adapters           {"name", "path", "pin"?} → 201 with the adapter
  ///     DELETE /v1/adapters/{name}    unloads (names may contain '/')
  ///     GET    /health                {"status": "ok"}
  ///     GET    /metrics               Prometheus text format
  public func router() -> Hummingbird.Router<BasicRequestContext> {
    let router = Hummingbird.Router()
    router.middlewares.add(OpenAIErrorMiddleware())
    router.get("/health") { _, _ in Self.json(["status": "ok"]) }
    router.get("/metrics") { _, _ in
      Response(
        status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
        body: ResponseBody(byteBuffer: ByteBuffer(string: self.metricsText())))
    }
    router.get("/v1/models") { _, _ in Self.json(self.models()) }
    router.post("/v1/adapters") { request, _ in try await self.loadAdapter(request) }
    router.delete("/v1/adapters/**") { _, context in
      let name = context.parameters.getCatchAll().joined(separator: "/")
      try self.engine.store.unload(name: name)  // ServeError: the middleware answers it
      return Self.json(Deleted(id: name))
    }
    router.post("/v1/completions") { request, _ in
      let body = try APIError.decode(CompletionBody.self, from: try await Self.body(of: request))
      let prepared = try self.preparer.prepare(body)
      return try await self.complete(prepared, chat: false)
    }
    router.post("/v1/chat/completions") { request, _ in
      let body = try APIError.decode(ChatCompletionBody.self, from: try await Self.body(of: request))
      let prepared = try self.preparer.prepare(body)
      return try await self.complete(prepared, chat: true)
    }
    return router
  }

  /// Runs a prepared request: one JSON answer, or server-sent events when it asked to stream.
  func complete(_ prepared: RequestPreparer.Prepared, chat: Bool) async throws -> Response {
    let generation = try start(prepared)
    let id =
      (chat ? "chatcmpl-" : "cmpl-") + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
    let created = Int(Date().timeIntervalSince1970)
    if !prepared.stream {
      let collected = TextCollector()
      let outcome = try await generation.run { piece in await collected.append(piece) }
      let text = await collected.text
      let usage = Usage(prompt: outcome.promptTokens, completion: outcome.completionTokens)
      if chat {
        return Self.json(
          ChatCompletionResponse(
            id: id, object: "chat.completion", created: created, model: outcome.model,
            choices: [
              .init(message: .init(role: "assistant", content: text), finishReason: outcome.finishReason)
            ],
            usage: usage))
      }
      return Self.json(
        CompletionResponse(
          id: id, created: created, model: outcome.model,
          choices: [.init(text: text, finishReason: outcome.finishReason)], usage: usage))
    }
    let includeUsage = prepared.includeUsage
    let body = ResponseBody { writer in
      var model = generation.requested
      func send(_ value: some Encodable) async throws {
        var buffer = ByteBuffer(string: "data: ")
        buffer.writeBytes(ResponseJSON.encode(value))
        buffer.writeString("\n\n")
        try await writer.write(buffer)
      }
      func chunk(_ text: String?, role: String? = nil, finish: String? = nil) async throws {
        if chat {
          try await send(
            ChatCompletionResponse(
              id: id, object: "chat.completion.chunk", created: created, model: model,
              choices: [.init(delta: .init(role: role, content: text), finishReason: finish)], usage: nil))
        } else {
          try await send(
            CompletionResponse(
              id: id, created: created, model: model,
              choices: [.init(text: text ?? "", finishReason: finish)],
              usage: nil))
        }
      }
      let outcome = try await generation.run { served in
        model = served
        if chat { try await chunk("", role: "assistant") }
      } emit: { piece in
        try await chunk(piece)
      }
      try await chunk(chat ? nil : "", finish: outcome.finishReason)
      if includeUsage {
        let usage = Usage(prompt: outcome.promptTokens, completion: outcome.completionTokens)
        if chat {
          try await send(
            ChatCompletionResponse(
              id: id, object: "chat.completion.chunk", created: created, model: model, choices: [],
              usage: usage))
        } else {
          try await send(
            CompletionResponse(id: id, created: created, model: model, choices: [], usage: usage))
        }
      }
      try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
      try await writer.finish(nil)
    }
    return Response(
      status: .ok,
      headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
      body: body)
  }

  /// `POST /v1/adapters`: reads the adapter off the event loop; 201 with its details.
  func loadAdapter(_ request: Request) async throws -> Response {
    let body = try APIError.decode(AdapterLoadBody.self, from: try await Self.body(of: request))
    let store = engine.store
    let result: Result<AdapterInfo, ServeError> = await withCheckedContinuation { done in
      DispatchQueue.global().async {
        done.resume(
          returning: Result { () throws(ServeError) in
            try store.load(name: body.name, path: body.path, pin: body.pin ?? false)
          })
      }
    }
    switch result {
    case .success(let info):
      var response = Self.json(AdapterDetails(info))
      response.status = .created
      return response
    case .failure(let error):
      throw APIError(error)
    }
  }

  /// The request body, at most `maxBodyBytes`.
  static func body(of request: Request) async throws -> Data {
    var request = request
    do {
      let buffer = try await request.collectBody(upTo: maxBodyBytes)
      return Data(buffer.readableBytesView)
    } catch {
      throw APIError(
        status: 413, message: "the request body exceeds \(maxBodyBytes) bytes", code: "body_too_large")
    }
  }

  static func json(_ value: some Encodable) -> Response {
    Response(
      status: .ok, headers: [.contentType: "application/json"],
      body: ResponseBody(byteBuffer: ByteBuffer(bytes: ResponseJSON.encode(value))))
  }
}

/// `DELETE /v1/adapters/{name}`'s answer, as OpenAI's model deletion.
struct Deleted: Encodable {
  var id: String
  var object = "model"
  var deleted = true
}

/// Answers every error in OpenAI's shape: `APIError` as it is, `ServeError` with its status,
/// Hummingbird's own errors (no route, wrong method) with their status, anything else 500.
struct OpenAIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
  func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
    async throws
    -> Response
  {
    do {
      return try await next(request, context)
    } catch let error as APIError {
      throw error
    } catch let error as ServeError {
      throw APIError(error)
    } catch let error as HTTPError {
      throw APIError(status: Int(error.status.code), message: error.body ?? "\(error.status.reasonPhrase)")
    } catch {
      throw APIError(status: 500, message: "\(error)", code: "internal_error")
    }
  }
}
