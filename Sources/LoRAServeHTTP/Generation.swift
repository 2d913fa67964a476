import Foundation
import LoRAServe

/// One submitted request followed to its end: text pieces out as they are ready, a stop
/// string cancels the engine's sequence at once, and so does the caller going away (its
/// `emit` throwing, or its task being cancelled).
struct Generation: Sendable {
  /// How it ended.
  struct Outcome: Sendable, Equatable {
    /// The model that served it: the adapter the router chose or was named, or the base.
    var model: String
    /// "stop", "length" or "cancelled".
    var finishReason: String
    var promptTokens: Int
    var completionTokens: Int
  }

  let handle: ServingEngine.Handle
  let baseName: String
  let requested: String
  let assembler: TextAssembler

  /// Runs to the end. `routed` is called once with the serving model's name before any text;
  /// `emit` with each non-empty piece of text.
  func run(
    routed: (String) async throws -> Void = { _ in },
    emit: (String) async throws -> Void
  ) async throws -> Outcome {
    let handle = handle
    return try await withTaskCancellationHandler {
      do {
        return try await follow(routed: routed, emit: emit)
      } catch {
        handle.cancel()
        throw error
      }
    } onCancel: {
      handle.cancel()
    }
  }

  private func follow(
    routed: (String) async throws -> Void, emit: (String) async throws -> Void
  ) async throws -> Outcome {
    var assembler = assembler
    var model = requested == "auto" ? baseName : requested
    var announced = false
    var accepted = 0
    var stoppedByString = false
    for await event in handle.events {
      switch event {
      case .routed(let adapter):
        model = adapter ?? baseName
        announced = true
        try await routed(model)
      case .token(let token):
        guard !stoppedByString else { continue }
        accepted += 1
        let step = assembler.add(token)
        if !step.text.isEmpty { try await emit(step.text) }
        if step.stopped {
          stoppedByString = true
          handle.cancel()
        }
      case .finished(let reason, let prompt, let completion):
        if !announced { try await routed(model) }
        if stoppedByString {
          return Outcome(model: model, finishReason: "stop", promptTokens: prompt, completionTokens: accepted)
        }
        let rest = assembler.finish()
        if !rest.isEmpty { try await emit(rest) }
        return Outcome(
          model: model, finishReason: reason.rawValue, promptTokens: prompt, completionTokens: completion)
      }
    }
    // The stream ended without `finished` (cannot happen with a well-behaved engine).
    try Task.checkCancellation()
    let rest = assembler.finish()
    if !rest.isEmpty { try await emit(rest) }
    return Outcome(model: model, finishReason: "cancelled", promptTokens: 0, completionTokens: accepted)
  }
}

/// A piece collector for non-streamed answers.
actor TextCollector {
  private(set) var text = ""
  func append(_ piece: String) { text += piece }
}
