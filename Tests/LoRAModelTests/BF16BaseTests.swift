import Foundation
import LoRAKernels
import Testing

@testable import LoRAFormats
@testable import LoRAModel

/// A bf16-held base against the fp32 one: the mode it must equal (same values: a bf16 file),
/// and the tolerance of bf16 rounding (an fp32 file), on both product routes.
@Suite(.serialized) struct BF16BaseTests {
  /// The routes this CPU can run: widening everywhere, oneDNN where it has bf16 products.
  static let routes = BF16Products.Route.allCases.filter { $0 == .widened || BF16MatMul.available }

  /// Runs `body` with this test's bf16 products on `route` (other tests keep theirs).
  func on<T>(_ route: BF16Products.Route, _ body: () throws -> T) rethrows -> T {
    try BF16Products.withRoute(route) {
      #expect(BF16Products.route == route)
      return try body()
    }
  }

  func load(_ path: String, _ precision: StoredPrecision) throws -> LlamaModel {
    try LlamaModel.load(ModelFiles.open(path), precision: precision).model
  }

  /// The mean loss of a fixed batch through an all-linear adapter with nonzero B, and each
  /// module's gradient (A then B).
  func lossAndGradients(_ model: LlamaModel, length: Int = 8) throws -> (loss: Double, modules: [[Float]]) {
    let config = LoRAConfig(r: 4, loraAlpha: 8, targetModules: ["all-linear"])
    let adapter = try LoRAAdapter(config: config, model: model.config, seed: 5)
    var random = SeededRandom(seed: 9)
    for m in adapter.modules { for i in 0..<m.b.count { m.b[i] = (random.nextUnitFloat() - 0.5) * 0.4 } }
    let batch = 2
    let tokens = (0..<batch * length).map { _ in Int32(random.next() % UInt64(model.config.vocabularySize)) }
    var targets = [Int32](repeating: -1, count: batch * length)
    for i in 0..<(batch * length - 1) where i % length != length - 1 { targets[i] = tokens[i + 1] }
    let a = LlamaActivations(
      config: model.config, batch: batch, length: length, keepForBackward: true, adapter: adapter)
    let g = LlamaGradients(config: model.config, batch: batch, length: length, maxRank: 4)
    model.forward(tokens: tokens, activations: a)
    adapter.gradients.zero()
    let trained = targets.filter { $0 >= 0 }.count
    let (sum, count) = model.backward(
      targets: targets, activations: a, gradients: g, gradientScale: 1 / Float(trained))
    return (sum / Double(count), adapter.modules.map { $0.gradA.values + $0.gradB.values })
  }

  func cosine(_ a: [Float], _ b: [Float]) -> Double {
    var (dot, aa, bb) = (0.0, 0.0, 0.0)
    for (x, y) in zip(a, b) { (dot, aa, bb) = (dot + Double(x * y), aa + Double(x * x), bb + Double(y * y)) }
    return dot / max((aa * bb).squareRoot(), 1e-30)
  }

  /// The bounds: loss within 1e-2 relative, every LoRA gradient's cosine ≥ 0.999.
  @Test(arguments: ["tiny-tied", "tiny-untied", "tiny-qwen2"], Self.routes)
  func bf16BaseIsWithinRoundingOfF32(fixture: String, route: BF16Products.Route) throws {
    let f32 = try load(Fixtures.path(fixture), .f32)
    let bf16 = try load(Fixtures.path(fixture), .bf16)
    #expect(bf16.weights.precision == .bf16 && bf16.weights.layers[0].q.precision == .bf16)
    let reference = try lossAndGradients(f32)
    let result = try on(route) { try lossAndGradients(bf16) }
    #expect(abs(result.loss - reference.loss) <= 1e-2 * reference.loss, "\(result.loss) vs \(reference.loss)")
    #expect(result.loss != reference.loss)  // the weights really were rounded
    for (i, (g, r)) in zip(result.modules, reference.modules).enumerated() {
      #expect(cosine(g, r) >= 0.999, "module \(i): cosine \(cosine(g, r))")
    }
    let matrices = { (m: LlamaModel) in m.weights.named.filter { $0.tensor.shape.count == 2 } }
    #expect(
      matrices(bf16).reduce(0) { $0 + $1.tensor.bytes } * 2
        == matrices(f32).reduce(0) { $0 + $1.tensor.bytes })
  }

  /// A bf16 file holds the same numbers either way, so the widened route must give the fp32
  /// path's results up to summation order; oneDNN also rounds activations.
  @Test(arguments: Self.routes)
  func bf16FileGivesTheSameModelInEitherPrecision(route: BF16Products.Route) throws {
    let folder = try SafetensorsFolderTests().rewrite(shards: 1, dtype: .bf16)
    defer { try? FileManager.default.removeItem(atPath: folder) }
    let reference = try lossAndGradients(load(folder, .f32))
    let (bf16, origin) = try LlamaModel.load(ModelFiles.open(folder), precision: .bf16)
    // The file's bf16 matrices are used in place from the map; only norms are converted.
    let matrices = bf16.weights.named.filter { $0.tensor.shape.count == 2 }.count
    #expect(
      origin.inPlaceTensors == matrices && origin.convertedTensors == bf16.weights.named.count - matrices)
    let result = try on(route) { try lossAndGradients(bf16) }
    let (lossBound, cosineBound) = route == .widened ? (1e-5, 0.99999) : (1e-2, 0.999)
    #expect(abs(result.loss - reference.loss) <= lossBound * reference.loss)
    for (g, r) in zip(result.modules, reference.modules) { #expect(cosine(g, r) >= cosineBound) }
  }

  /// A weight beyond bf16's range: the error names the file and the tensor, and says what
  /// to do; fp32 loads it.
  @Test func overflowingTensorIsNamed() throws {
    let folder = NSTemporaryDirectory() + "lora-overflow-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: folder) }
    try FileManager.default.copyItem(
      atPath: Fixtures.path("tiny-tied/config.json"), toPath: folder + "/config.json")
    let source = try SafetensorsFile(path: Fixtures.path("tiny-tied/model.safetensors"))
    let name = "model.layers.1.mlp.up_proj.weight"
    let tensors = try source.tensors.keys.sorted().map { key in
      let t = try source.tensor(key).clone()
      if key == name { t[5] = 3.4e38 }
      return (key, t, SafetensorsWriter.DType.f32)
    }
    try SafetensorsWriter.write(tensors, to: folder + "/model.safetensors")
    #expect(throws: ModelError.self) { try load(folder, .bf16) }
    do {
      _ = try load(folder, .bf16)
    } catch {
      let message = "\(error)"
      #expect(
        message.hasPrefix(folder) && message.contains(name) && message.contains("element 5"), "\(message)")
      #expect(message.contains("fp32"))
    }
    #expect(try load(folder, .f32).weights.layers[1].up.widened()[5] == 3.4e38)
  }

  /// `auto` is bf16 exactly where the CPU has native bf16 products; f32 is always f32.
  @Test func autoFollowsTheCPU() throws {
    #expect(try BasePrecision.auto.resolve() == (BF16MatMul.nativeBF16 ? .bf16 : .f32))
    #expect(try BasePrecision.f32.resolve() == .f32)
    if BF16MatMul.available { #expect(try BasePrecision.bf16.resolve() == .bf16) }
  }

  /// A merged-task-switch copy of a bf16 base is writable fp32 holding the bf16 values.
  @Test func writableCopiesOfABF16BaseAreFP32() throws {
    let bf16 = try load(Fixtures.path("tiny-tied"), .bf16)
    let copy = LlamaWeights(copying: bf16.weights, writable: [.q, .down])
    #expect(copy.layers[0].q.precision == .f32 && copy.layers[0].k.precision == .bf16)
    #expect(copy.layers[1].down.widened().values == bf16.weights.layers[1].down.widened().values)
    #expect(copy.named.first { $0.name == "model.layers.1.mlp.down_proj.weight" }?.tensor.precision == .f32)
  }
}
