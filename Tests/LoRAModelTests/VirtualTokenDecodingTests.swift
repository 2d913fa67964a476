import Foundation
import Testing

@testable import LoRAKernels
@testable import LoRAModel

/// Prompt and prefix tuning through a KV cache (generate, serve): the prefill puts the
/// virtual tokens in the cache and each decoding step continues after them, giving the
/// logits of one full pass over the whole sequence; the model's context bounds them.
@Suite struct VirtualTokenDecodingTests {
  static let configs: [VirtualTokenConfig] = [
    .init(kind: .prompt, tokens: 3), .init(kind: .prefix, tokens: 4),
    .init(kind: .prefix, tokens: 2, projection: 5),
  ]

  /// An adapter with LoRA on q and v and the virtual tokens, every parameter random.
  static func adapter(_ virtual: VirtualTokenConfig, _ model: LlamaModel) throws -> LoRAAdapter {
    let adapter = try LoRAAdapter(
      config: LoRAConfig(r: 2, loraAlpha: 4, virtualTokens: virtual), model: model.config, seed: 7)
    var random = SeededRandom(seed: 11)
    for i in 0..<adapter.parameterCount { adapter.parameters[i] = 0.3 * (2 * random.nextUnitFloat() - 1) }
    return adapter
  }

  @Test(arguments: configs) func cachedDecodingEqualsOneFullPass(_ virtual: VirtualTokenConfig) throws {
    let (model, _) = try LlamaModel.load(path: Fixtures.path("tiny-qwen2"))
    let adapter = try Self.adapter(virtual, model)
    let tokens: [Int32] = [3, 17, 42, 8, 64, 5]
    let v = model.config.vocabularySize
    // One pass without a cache: the logits of every token's position.
    let full = LlamaActivations(
      config: model.config, batch: 1, length: tokens.count, keepForBackward: false, adapter: adapter)
    model.forward(tokens: tokens, activations: full)
    let logits = Tensor(zeros: [full.length, v])
    model.logits(into: logits, hidden: full.finalNormed)
    let expected = Array(logits.values[(full.virtualRows * v)...])
    // Prefill the first two tokens, then one step per token.
    let decoder = BatchDecoder(model: model, maxRows: 1, maxRank: 2)
    let sequence = DecodeSequence(
      config: model.config, adapter: adapter, capacity: adapter.virtualPositions + tokens.count)
    var got = decoder.prefill(sequence, prompt: Array(tokens[..<2])).values
    #expect(sequence.length == adapter.virtualPositions + 2)
    for token in tokens[2...] { got += decoder.step([sequence], tokens: [token]).values }
    let prefillRows = Array(expected[v..<(2 * v)]) + Array(expected[(2 * v)...])
    #expect(AdapterChainTests.close(got, prefillRows), "\(virtual.summary)")
    // The same adapter without its virtual tokens gives other logits: they are applied.
    var plainConfig = adapter.config
    plainConfig.virtualTokens = nil
    let plain = try LoRAAdapter(config: plainConfig, model: model.config, seed: 7)
    plain.parameters.copy(from: adapter.parameters.view(offset: 0, shape: [plain.parameterCount]))
    let bare = DecodeSequence(config: model.config, adapter: plain, capacity: tokens.count)
    #expect(
      !AdapterChainTests.close(
        decoder.prefill(bare, prompt: Array(tokens[..<2])).values, Array(expected[v..<(2 * v)])))
  }

  /// A generation's capacity leaves the virtual tokens their positions within the context.
  @Test func generatorKeepsTheVirtualTokensWithinTheContext() throws {
    let (model, _) = try LlamaModel.load(path: Fixtures.path("tiny-qwen2"))
    let adapter = try Self.adapter(.init(kind: .prefix, tokens: 10), model)
    let context = min(model.config.contextLength, model.rope.maxPositions)
    let generator = Generator(model: model, capacity: context, adapter: adapter)
    #expect(generator.capacity == context - 10)
    var sampler = Sampler()
    #expect(throws: GenerationError.self) {
      try generator.generate(
        prompt: [Int32](repeating: 3, count: context - 10), maxTokens: 1, sampler: &sampler
      ) {
        _ in true
      }
    }
    // `generate --max-tokens` near Int.max is refused, not an overflow.
    #expect(throws: GenerationError.tooLong(prompt: 2, maxTokens: .max, capacity: context - 10)) {
      try generator.generate(prompt: [3, 4], maxTokens: .max, sampler: &sampler) { _ in true }
    }
    let stats = try generator.generate(prompt: [3, 4], maxTokens: 3, sampler: &sampler) { _ in true }
    #expect(stats.generatedTokens == 3)
  }
}
