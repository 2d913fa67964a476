import Foundation
import LoRAFormats
import LoRAOpenAI
import LoRAServe

/// The serving engine behind OpenAI's API: runs the requests `RequestPreparer` makes of the
/// bodies, and names what served them.
/// The HTTP routes are in `OpenAIServer+Routes.swift`.
public final class OpenAIServer: Sendable {
  public let engine: ServingEngine
  public let tokenizer: Tokenizer
  /// The base's name in `model` fields.
  public var baseName: String { engine.store.baseName }
  /// Checks request bodies and turns them into the engine's requests.
  public let preparer: RequestPreparer
  /// The layout `/v1/chat/completions` renders (nil: chat is refused).
  public var chatFormat: ChatFormat? { preparer.chatFormat }
  /// Unix time of start: every model's `created`.
  public let created: Int

  /// Largest request body in bytes.
  public static let maxBodyBytes = 8 << 20

  public init(engine: ServingEngine, tokenizer: Tokenizer, chatTemplate: String?) {
    self.engine = engine
    self.tokenizer = tokenizer
    preparer = RequestPreparer(
      tokenizer: tokenizer, chatFormat: ChatFormat.detect(template: chatTemplate, tokenizer: tokenizer),
      contextLength: engine.contextLength)
    created = Int(Date().timeIntervalSince1970)
  }

  /// Submits a prepared request.
  func start(_ prepared: RequestPreparer.Prepared) throws(APIError) -> Generation {
    let handle: ServingEngine.Handle
    do {
      handle = try engine.submit(prepared.request)
    } catch {
      throw APIError(error)
    }
    return Generation(
      handle: handle, baseName: baseName, requested: prepared.request.model,
      assembler: TextAssembler(
        tokenizer: tokenizer, stopStrings: prepared.stopStrings, stopTokens: prepared.request.stopTokens))
  }

  /// `GET /v1/models`: the base first, then every adapter in load order.
  public func models() -> ModelList {
    let store = engine.store
    var data = [
      ModelEntry(
        id: baseName, created: created, root: baseName, parent: nil, adapter: nil,
        maxModelLen: engine.contextLength,
        fingerprint: store.baseFingerprint)
    ]
    for info in store.list() {
      data.append(
        ModelEntry(
          id: info.name, created: created, root: baseName, parent: baseName, adapter: info, maxModelLen: nil,
          fingerprint: info.baseFingerprint))
    }
    return ModelList(data: data)
  }
}
