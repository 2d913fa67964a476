import Foundation
import LoRAKernels
import LoRAModel

/// Fixtures and helpers shared by the GGUF LoRA and merge tests.
enum ExportFixtures {
  static let root = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!
  static func path(_ name: String) -> String { root.appendingPathComponent(name).path }

  /// A fixed batch of token ids (vocabulary 96): [2, 12].
  static let tokens: [[Int32]] = [
    [1, 17, 42, 5, 88, 23, 61, 9, 70, 33, 2, 54], [1, 95, 3, 47, 12, 66, 8, 30, 77, 41, 19, 60],
  ]

  /// Logits [B·T, V] of `model` (with `adapter` applied, if any) on `tokens`.
  static func logits(_ model: LlamaModel, adapter: LoRAAdapter? = nil, tokens: [[Int32]] = tokens) -> [Float]
  {
    let (batch, length) = (tokens.count, tokens[0].count)
    let activations = LlamaActivations(
      config: model.config, batch: batch, length: length, keepForBackward: false, adapter: adapter)
    let hidden = model.forward(tokens: tokens.flatMap { $0 }, activations: activations)
    let out = Tensor(zeros: [batch * length, model.config.vocabularySize])
    model.logits(into: out, hidden: hidden)
    return out.values
  }

  /// Fills every A and B with values in [-scale, scale) from `seed` (B nonzero, unlike a fresh adapter).
  static func randomize(_ adapter: LoRAAdapter, seed: UInt64, scale: Float = 0.5) {
    var random = SeededRandom(seed: seed)
    for i in 0..<adapter.parameters.count { adapter.parameters[i] = (2 * random.nextUnitFloat() - 1) * scale }
  }

  /// ΔW = s·B·A of module `m`: [OUT, IN].
  static func delta(_ m: LoRAAdapter.Module) -> Tensor {
    let w = Tensor(zeros: [m.outFeatures, m.inFeatures])
    LowRank.merge(into: w, a: m.a, b: m.b, scale: m.scale)
    return w
  }

  static func maxDifference(_ x: [Float], _ y: [Float]) -> Float {
    guard x.count == y.count else { return .infinity }
    return zip(x, y).map { abs($0 - $1) }.max() ?? 0
  }

  static func maxAbs(_ x: [Float]) -> Float { x.map(abs).max() ?? 0 }
}

/// A temporary folder removed when released.
final class ExportTestFolder {
  let path: String
  init() throws {
    path = NSTemporaryDirectory() + "lora-export-test-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
  }
  deinit { try? FileManager.default.removeItem(atPath: path) }
  var contents: [String] { ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted() }
}
