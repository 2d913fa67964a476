import Foundation
import LoRAKernels
import Testing

@testable import LoRAFormats
@testable import LoRAModel

/// The default base model (SmolLM2-135M-Instruct, Q4_1 GGUF) against PyTorch + transformers
/// in float64 on the same dequantized weights. Runs when the model is in the cache, which
/// `launch/test` ensures; otherwise these tests are skipped and say why.
@Suite(
  .serialized,
  .enabled(if: SmolLM2.available, "the default model is not at \(SmolLM2.path); run launch/setup"))
struct SmolLM2Tests {
  @Test func dequantizedWeightsMatchTransformers() throws {
    let (model, _) = try SmolLM2.loaded()
    let facts = try SmolLM2.reference().facts
    let w = model.weights.layers[0]
    let hidden = model.config.hiddenSize
    func row(_ t: FrozenMatrix, _ r: Int) -> [Float] {
      Array(t.widened().values[(r * hidden)..<(r * hidden + 8)])
    }
    for (got, want) in [
      (row(w.q, 0), facts.q_proj_row0_first8), (row(w.q, 1), facts.q_proj_row1_first8),
      (row(w.k, 1), facts.k_proj_row1_first8),
      (row(model.weights.embedding, 0), facts.embed_tokens_row0_first8),
    ] {
      for (a, b) in zip(got, want) { #expect(abs(Double(a) - b) <= 1e-6 * max(1, abs(b))) }
    }
    #expect(model.config.parameterCount == facts.parameters)
  }

  @Test func tokenizerFromGGUFMatchesTheReferenceIDs() throws {
    let reference = try SmolLM2.reference()
    let tokenizer = try SmolLM2.tokenizer()
    for prompt in reference.prompts {
      #expect(tokenizer.encode(prompt.prompt) == prompt.ids, "\(prompt.prompt)")
    }
    #expect(tokenizer.encode(reference.greedy.prompt) == reference.greedy.ids)
  }

  @Test func topFiveLogitsMatchAtEveryPosition() throws {
    let (model, _) = try SmolLM2.loaded()
    let vocabulary = model.config.vocabularySize
    for prompt in try SmolLM2.reference().prompts {
      let activations = LlamaActivations(
        config: model.config, batch: 1, length: prompt.ids.count, keepForBackward: false)
      let hidden = model.forward(tokens: prompt.ids, activations: activations)
      let logits = Tensor(zeros: [prompt.ids.count, vocabulary])
      model.logits(into: logits, hidden: hidden)
      var worst = 0.0
      for (position, top) in prompt.top5.enumerated() {
        let largest = abs(top[0][1])
        for entry in top {
          let got = Double(logits[position * vocabulary + Int(entry[0])])
          worst = max(worst, abs(got - entry[1]) / largest)
        }
        // The reference's most likely token is ours too.
        let row = logits.view(offset: position * vocabulary, shape: [vocabulary]).values
        #expect(
          row.indices.max { row[$0] < row[$1] } == Int(top[0][0]),
          "position \(position) of '\(prompt.prompt)'")
      }
      #expect(worst <= 1e-4, "'\(prompt.prompt)': worst difference \(worst) of the largest logit")
    }
  }

  @Test func greedyContinuationMatchesForTwentyTokens() throws {
    let (model, _) = try SmolLM2.loaded()
    let greedy = try SmolLM2.reference().greedy
    let generator = Generator(model: model, capacity: 64)
    var sampler = Sampler()
    var produced: [Int32] = []
    _ = try generator.generate(prompt: greedy.ids, maxTokens: 20, sampler: &sampler) {
      produced.append($0)
      return true
    }
    #expect(produced == greedy.continuation)
  }
}

/// The default model, loaded once for all tests.
enum SmolLM2 {
  static let path =
    (ProcessInfo.processInfo.environment["SWIFT_LORA_DIST_CACHE"]
      ?? (NSHomeDirectory() + "/.cache/swift-lora-dist")) + "/SmolLM2-135M-Instruct.Q4_1.gguf"
  static var available: Bool { FileManager.default.fileExists(atPath: path) }

  struct Reference: Decodable {
    struct Prompt: Decodable {
      var prompt: String
      var ids: [Int32]
      var top5: [[[Double]]]
    }
    struct Greedy: Decodable {
      var prompt: String
      var ids: [Int32]
      var continuation: [Int32]
    }
    struct Facts: Decodable {
      var parameters: Int
      var q_proj_row0_first8: [Double]
      var q_proj_row1_first8: [Double]
      var k_proj_row1_first8: [Double]
      var embed_tokens_row0_first8: [Double]
    }
    var prompts: [Prompt]
    var greedy: Greedy
    var facts: Facts
  }

  static func reference() throws -> Reference {
    try JSONDecoder().decode(
      Reference.self, from: Data(contentsOf: Fixtures.root.appendingPathComponent("smollm2-reference.json")))
  }

  private static let shared = Result { try LlamaModel.load(path: path) }
  static func loaded() throws -> (LlamaModel, LlamaModel.Origin) { try shared.get() }
  static func tokenizer() throws -> Tokenizer { try Tokenizer(gguf: GGUFFile(path: path)) }
}
