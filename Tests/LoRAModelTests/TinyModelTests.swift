import Foundation
import LoRAKernels
import Testing

@testable import LoRAFormats
@testable import LoRAModel

/// Logits of PyTorch (float64) for a fixed batch, from scripts/make_reference.py.
struct LogitsReference: Decodable {
  var tokens: [[Int32]]
  var logits: [Double]
  var shape: [Int]
}

enum Fixtures {
  static let root = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!
  static func path(_ name: String) -> String { root.appendingPathComponent(name).path }
  static func reference(_ model: String, _ file: String = "reference.json") throws -> LogitsReference {
    try JSONDecoder().decode(
      LogitsReference.self, from: Data(contentsOf: root.appendingPathComponent("\(model)/\(file)")))
  }
}

/// Runs `model` over the reference batch and returns the largest absolute logit difference.
func maxLogitError(_ model: LlamaModel, _ reference: LogitsReference) -> Double {
  let (batch, length, vocabulary) = (reference.shape[0], reference.shape[1], reference.shape[2])
  let activations = LlamaActivations(
    config: model.config, batch: batch, length: length, keepForBackward: true)
  let hidden = model.forward(tokens: reference.tokens.flatMap { $0 }, activations: activations)
  let logits = Tensor(zeros: [batch * length, vocabulary])
  model.logits(into: logits, hidden: hidden)
  guard logits.count == reference.logits.count else { return .infinity }
  var worst = 0.0
  for (got, want) in zip(logits.values, reference.logits) {
    let difference = abs(Double(got) - want)
    if !(difference <= worst) { worst = difference.isNaN ? .infinity : difference }
  }
  return worst
}

@Suite struct TinyModelTests {
  @Test(arguments: ["tiny-tied", "tiny-untied", "tiny-qwen2", "tiny-mistral"])
  func huggingFaceFolderMatchesPyTorch(model name: String) throws {
    let (model, origin) = try LlamaModel.load(path: Fixtures.path(name))
    #expect(origin.format == "Hugging Face folder")
    #expect(maxLogitError(model, try Fixtures.reference(name)) <= 1e-4)
  }

  @Test(arguments: [
    ("tiny-tied", "reference.json"), ("tiny-untied", "reference-f16.json"), ("tiny-qwen2", "reference.json"),
  ])
  func ggufMatchesPyTorch(model name: String, reference: String) throws {
    let (model, origin) = try LlamaModel.load(path: Fixtures.path("\(name)/model.gguf"))
    #expect(origin.format == "GGUF v3")
    #expect(maxLogitError(model, try Fixtures.reference(name, reference)) <= 1e-4)
  }

  @Test func ggufAndHuggingFaceCopiesGiveTheSameLogits() throws {
    // llama.cpp's q/k row permutation is undone at load: both copies hold the same layout.
    let (gguf, _) = try LlamaModel.load(path: Fixtures.path("tiny-tied/model.gguf"))
    let (hf, _) = try LlamaModel.load(path: Fixtures.path("tiny-tied"))
    for l in 0..<hf.config.layers {
      #expect(gguf.weights.layers[l].q.widened().values == hf.weights.layers[l].q.widened().values)
      #expect(gguf.weights.layers[l].k.widened().values == hf.weights.layers[l].k.widened().values)
    }
    let reference = try Fixtures.reference("tiny-tied")
    #expect(maxLogitError(gguf, reference) == maxLogitError(hf, reference))
  }

  @Test func configurationsAreRead() throws {
    let (tied, _) = try LlamaModel.load(path: Fixtures.path("tiny-tied/model.gguf"))
    #expect(tied.config.tiedEmbeddings && tied.weights.output.isIdentical(to: tied.weights.embedding))
    #expect(tied.config.heads == 4 && tied.config.kvHeads == 2 && tied.config.headSize == 8)
    #expect(tied.config.layers == 2 && tied.config.vocabularySize == 96)
    let (untied, _) = try LlamaModel.load(path: Fixtures.path("tiny-untied"))
    #expect(!untied.config.tiedEmbeddings && untied.config.ropeTheta == 500_000)
    let (qwen, _) = try LlamaModel.load(path: Fixtures.path("tiny-qwen2/model.gguf"))
    #expect(qwen.config.architecture == "qwen2" && qwen.config.attentionBias)
  }

  @Test func f32WeightsAreUsedInPlace() throws {
    let (model, origin) = try LlamaModel.load(path: Fixtures.path("tiny-tied/model.gguf"))
    // Every tensor but the permuted q and k projections is used straight from the map.
    #expect(origin.convertedTensors == 2 * model.config.layers)
    #expect(origin.inPlaceTensors == 2 + 9 * model.config.layers - 2 * model.config.layers)
  }

  /// tiny-mistral: the window (3) is shorter than the sequence, so cached decoding must
  /// apply it as the batched pass does.
  @Test(arguments: ["tiny-qwen2", "tiny-mistral"])
  func kvCacheGivesTheSameLogitsAsOneBatchedPass(model name: String) throws {
    let (model, _) = try LlamaModel.load(path: Fixtures.path(name))
    let tokens: [Int32] = [5, 17, 42, 8, 91, 3]
    let full = LlamaActivations(config: model.config, batch: 1, length: tokens.count, keepForBackward: false)
    let hidden = model.forward(tokens: tokens, activations: full)
    let cache = KVCache(config: model.config, batch: 1, capacity: 16)
    let prefix = LlamaActivations(config: model.config, batch: 1, length: 4, keepForBackward: false, keys: 16)
    _ = model.forward(tokens: Array(tokens[0..<4]), activations: prefix, cache: cache)
    let step = LlamaActivations(config: model.config, batch: 1, length: 1, keepForBackward: false, keys: 16)
    for position in 4..<tokens.count {
      let h = model.forward(tokens: [tokens[position]], activations: step, cache: cache)
      let expected = hidden.view(offset: position * model.config.hiddenSize, shape: [model.config.hiddenSize])
        .values
      for (a, b) in zip(h.values, expected) { #expect(abs(a - b) <= 1e-5) }
    }
    #expect(cache.length == tokens.count)
  }
}

@Suite struct LogitErrorTests {
  @Test func reportsTheDifferenceAndNaN() throws {
    let (model, _) = try LlamaModel.load(path: Fixtures.path("tiny-tied"))
    var reference = try Fixtures.reference("tiny-tied")
    let exact = maxLogitError(model, reference)
    #expect(exact > 0 && exact <= 1e-4)
    reference.logits[5] += 0.5
    #expect(abs(maxLogitError(model, reference) - 0.5) < 1e-3)
    reference.logits[7] = .nan
    #expect(maxLogitError(model, reference) == .infinity)
  }
}
