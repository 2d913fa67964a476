import Foundation
import LoRAKernels
import LoRAModel
import Testing

@testable import LoRAServe

/// Continuous batching over adapters: every request gets the tokens `Generator` gives it
/// alone, whatever shares its steps; cancelling, errors and draining.
@Suite struct ServingEngineTests {
  static func collect(_ handle: ServingEngine.Handle) async -> (
    routed: String??, tokens: [Int32], end: CompletionEvent?
  ) {
    var routed: String?? = nil
    var tokens: [Int32] = []
    var end: CompletionEvent?
    for await event in handle.events {
      switch event {
      case .routed(let name): routed = .some(name)
      case .token(let t): tokens.append(t)
      case .finished: end = event
      }
    }
    return (routed, tokens, end)
  }

  static func prompt(_ length: Int, seed: UInt64) -> [Int32] {
    var random = SeededRandom(seed: seed)
    return (0..<length).map { _ in Int32(random.next() % 96) }
  }

  @Test(arguments: ServeSettings.Schedule.allCases)
  func concurrentRequestsOfDifferentAdaptersEqualEachAlone(schedule: ServeSettings.Schedule) async throws {
    let f = try ServeFixture()
    let adapters = try ServeFixture.configs.enumerated().map { try f.adapter($1, seed: UInt64(5 + $0)) }
    let store = f.store()
    for (i, a) in adapters.enumerated() { try store.load(name: "a\(i)", path: f.checkpoint(a, "a\(i)")) }
    var settings = ServeSettings()
    settings.maxBatch = 4  // fewer rows than requests: some wait and join later
    settings.schedule = schedule
    let engine = try ServingEngine(store: store, settings: settings)
    let names = ["a0", "tiny", "a1", "a2", "a0", "a1", "tiny"]
    let requests = names.enumerated().map { i, name in
      CompletionRequest(
        model: name, prompt: Self.prompt(2 + i, seed: UInt64(i)), maxTokens: 3 + i % 4,
        temperature: i % 3 == 2 ? 0.8 : 0, seed: UInt64(i))
    }
    // All queued before the thread starts: the first steps hold four of them at once.
    let handles = try requests.map { try engine.submit($0) }
    engine.start()
    var results: [(routed: String??, tokens: [Int32], end: CompletionEvent?)] = []
    for h in handles { results.append(await Self.collect(h)) }
    for (i, request) in requests.enumerated() {
      let adapter = request.model == "tiny" ? nil : adapters[Int(request.model.dropFirst())!]
      let generator = Generator(
        model: f.model, capacity: request.prompt.count + request.maxTokens, adapter: adapter)
      var sampler = Sampler(temperature: request.temperature, topP: 1, seed: request.seed)
      var alone: [Int32] = []
      _ = try generator.generate(prompt: request.prompt, maxTokens: request.maxTokens, sampler: &sampler) {
        alone.append($0)
        return true
      }
      #expect(results[i].tokens == alone, "request \(i) (\(request.model))")
      #expect(results[i].routed == .some(request.model == "tiny" ? nil : request.model))
      #expect(
        results[i].end
          == .finished(.length, promptTokens: request.prompt.count, completionTokens: request.maxTokens))
    }
    let stats = engine.stats()
    #expect(stats.perModel["a0"]?.requests == 2 && stats.perModel["tiny"]?.generatedTokens == 3 + 6)
    #expect(stats.steps > 0 && stats.stepRows > stats.steps)
    await engine.shutdown()
  }

  @Test func stopTokensAndErrors() async throws {
    let f = try ServeFixture()
    let store = f.store()
    let engine = try ServingEngine(store: store)
    engine.start()
    let prompt = Self.prompt(4, seed: 1)
    // Greedy output first, then the same request stopping at its second token.
    let full = await Self.collect(
      try engine.submit(CompletionRequest(model: "tiny", prompt: prompt, maxTokens: 6)))
    let stop = full.tokens[1]
    let stopped = await Self.collect(
      try engine.submit(CompletionRequest(model: "tiny", prompt: prompt, maxTokens: 6, stopTokens: [stop])))
    #expect(stopped.tokens == Array(full.tokens.prefix(through: full.tokens.firstIndex(of: stop)!)))
    #expect(stopped.end == .finished(.stop, promptTokens: 4, completionTokens: stopped.tokens.count))

    let context = engine.contextLength
    #expect(throws: ServeError.unknownModel(name: "nope", available: ["tiny", "auto"])) {
      try engine.submit(CompletionRequest(model: "nope", prompt: prompt, maxTokens: 2))
    }
    #expect(throws: ServeError.promptTooLong(prompt: 4, maxTokens: context, context: context)) {
      try engine.submit(CompletionRequest(model: "tiny", prompt: prompt, maxTokens: context))
    }
    // A client's max_tokens near Int.max is refused, not an overflow (found by fuzzing).
    #expect(throws: ServeError.promptTooLong(prompt: 4, maxTokens: .max, context: context)) {
      try engine.submit(CompletionRequest(model: "tiny", prompt: prompt, maxTokens: .max))
    }
    #expect(
      ServeError.promptTooLong(prompt: 4, maxTokens: .max, context: context).description.contains("exceed"))
    #expect(throws: ServeError.emptyPrompt) {
      try engine.submit(CompletionRequest(model: "tiny", prompt: [], maxTokens: 2))
    }
    #expect(throws: ServeError.invalidField(field: "top_p", reason: "must be in (0, 1]")) {
      try engine.submit(CompletionRequest(model: "tiny", prompt: prompt, maxTokens: 2, topP: 0))
    }
    await engine.shutdown()
    #expect(throws: ServeError.shuttingDown) {
      try engine.submit(CompletionRequest(model: "tiny", prompt: prompt, maxTokens: 2))
    }
  }

  /// A request cancelled while it waits never runs. (Cancelling a running one is checked
  /// on the real model by Tests/serve, where a step is slow enough to cancel between.)
  @Test func aCancelledWaitingRequestNeverRuns() async throws {
    let f = try ServeFixture()
    let engine = try ServingEngine(store: f.store())
    let handle = try engine.submit(
      CompletionRequest(model: "tiny", prompt: Self.prompt(3, seed: 1), maxTokens: 8))
    handle.cancel()
    engine.start()
    let result = await Self.collect(handle)
    #expect(
      result.tokens.isEmpty && result.end == .finished(.cancelled, promptTokens: 3, completionTokens: 0))
    let other = await Self.collect(
      try engine.submit(CompletionRequest(model: "tiny", prompt: Self.prompt(3, seed: 1), maxTokens: 8)))
    #expect(other.tokens.count == 8)
    await engine.shutdown()
  }

  @Test func shutdownFinishesAcceptedRequests() async throws {
    let f = try ServeFixture()
    let engine = try ServingEngine(store: f.store())
    engine.start()
    let handles = try (0..<3).map {
      try engine.submit(
        CompletionRequest(model: "tiny", prompt: Self.prompt(3, seed: UInt64($0)), maxTokens: 8))
    }
    await engine.shutdown()
    for h in handles {
      let result = await Self.collect(h)
      #expect(
        result.tokens.count == 8 && result.end == .finished(.length, promptTokens: 3, completionTokens: 8))
    }
  }
}
