import Foundation
import LoRAKernels
import LoRAModel
import Testing

@testable import LoRAServe

/// Adapters with prompt or prefix tuning served beside plain ones: each request gets the
/// tokens `Generator` gives it alone, and the virtual tokens count against the context.
@Suite struct ServeVirtualTokenTests {
  @Test func virtualTokenAdaptersServeBesidePlainOnes() async throws {
    let f = try ServeFixture()
    let prompt = try f.adapter(
      LoRAConfig(targetModules: [], virtualTokens: .init(kind: .prompt, tokens: 3)), seed: 21)
    let prefix = try f.adapter(
      LoRAConfig(r: 2, loraAlpha: 4, virtualTokens: .init(kind: .prefix, tokens: 4, projection: 6)), seed: 22)
    let plain = try f.adapter(ServeFixture.configs[0], seed: 23)
    let store = f.store()
    try store.load(name: "prompt", path: f.checkpoint(prompt, "prompt"))
    try store.load(name: "prefix", path: f.peft(prefix, "prefix"))
    try store.load(name: "plain", path: f.checkpoint(plain, "plain"))
    #expect(store.virtualPositions("prompt") == 3 && store.virtualPositions("auto") == 4)
    #expect(store.list().first { $0.name == "prefix" }?.virtualTokens == 4)
    let engine = try ServingEngine(store: store, settings: ServeSettings())
    let served = try store.acquire("prefix")
    let names = ["prompt", "plain", "prefix", "tiny", "prefix"]
    let requests = names.enumerated().map { i, name in
      CompletionRequest(
        model: name, prompt: ServingEngineTests.prompt(3 + i, seed: UInt64(40 + i)), maxTokens: 4)
    }
    let handles = try requests.map { try engine.submit($0) }
    engine.start()
    for (request, handle) in zip(requests, handles) {
      let got = await ServingEngineTests.collect(handle)
      let adapter = ["prompt": prompt, "plain": plain, "prefix": served][request.model]
      let generator = Generator(
        model: f.model, capacity: request.prompt.count + request.maxTokens, adapter: adapter)
      var sampler = Sampler()
      var alone: [Int32] = []
      _ = try generator.generate(prompt: request.prompt, maxTokens: request.maxTokens, sampler: &sampler) {
        alone.append($0)
        return true
      }
      #expect(got.tokens == alone, "\(request.model)")
    }
    // The prefix's 4 positions come out of the context a request may fill.
    let context = engine.contextLength
    #expect(throws: ServeError.promptTooLong(prompt: context - 4, maxTokens: 1, context: context - 4)) {
      _ = try engine.submit(
        CompletionRequest(model: "prefix", prompt: [Int32](repeating: 3, count: context - 4), maxTokens: 1))
    }
    _ = try engine.submit(
      CompletionRequest(model: "plain", prompt: [Int32](repeating: 3, count: context - 4), maxTokens: 1))
    await engine.shutdown()
  }
}
