import Foundation
import Testing

@testable import LoRAFormats

/// Every supported ggml type against gguf-py's reference dequantization of the same random
/// blocks (fixtures written by scripts/make_reference.py).
@Suite struct DequantizeTests {
  static let fixtures = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!

  @Test(arguments: ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k", "q5_k", "q6_k"])
  func matchesReference(name: String) throws {
    let gguf = try GGUFFile(path: Self.fixtures.appendingPathComponent("quants.gguf").path)
    let expectedJSON = try Data(contentsOf: Self.fixtures.appendingPathComponent("quants-expected.json"))
    let expected = try JSONDecoder().decode([String: [Float]].self, from: expectedJSON)
    let reference = try #require(expected[name])
    let tensor = try gguf.tensor(name)
    #expect(tensor.shape == [2, 512])
    #expect(tensor.count == reference.count)
    var worst: Float = 0
    for (got, want) in zip(tensor.values, reference) {
      worst = max(worst, abs(got - want) / max(abs(want), 1e-3))
    }
    #expect(worst <= 1e-6, "\(name): worst relative difference \(worst)")
  }

  @Test func typeTableMatchesGGML() {
    #expect(GGMLType.q4_1.byteCount(elements: 576) == 18 * 20)
    #expect(GGMLType.q6_K.byteCount(elements: 512) == 420)
    #expect(GGMLType.q4_K.byteCount(elements: 100) == nil)
  }
}
