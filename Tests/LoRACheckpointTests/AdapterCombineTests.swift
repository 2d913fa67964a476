import Foundation
import LoRAKernels
import LoRAModel
import Testing

@testable import LoRACheckpoint

/// Every combination mode on ΔW: against PEFT's add_weighted_adapter on the tiny model
/// (Fixtures/combine-reference.json, scripts/make_combine_fixture.py), the exact sum, SVD at
/// full rank, seeded DARE, and what is refused.
@Suite struct AdapterCombineTests {
  struct Reference: Decodable {
    var weights: [Double]
    var logits: [String: [Float]]
  }

  static func setup() throws -> (LlamaModel, [LoRAAdapter], Reference) {
    let (model, _) = try LlamaModel.load(path: ExportFixtures.path("tiny-tied"))
    let adapters = try ["peft-tiny", "peft-tiny-r2"].map {
      try LoRAAdapter.loadPEFT(from: ExportFixtures.path($0), model: model.config)
    }
    let data = try Data(contentsOf: ExportFixtures.root.appendingPathComponent("combine-reference.json"))
    return (model, adapters, try JSONDecoder().decode(Reference.self, from: data))
  }

  static func expectLogits(_ model: LlamaModel, _ adapter: LoRAAdapter, _ expected: [Float], _ label: String)
  {
    let got = ExportFixtures.logits(model, adapter: adapter)
    let tolerance = 1e-4 * ExportFixtures.maxAbs(expected)
    #expect(ExportFixtures.maxDifference(got, expected) <= tolerance, "\(label)")
  }

  @Test func catIsPEFTsCatAndTheExactWeightedSum() throws {
    let (model, adapters, reference) = try Self.setup()
    let (cat, modules, leftOut) = try AdapterCombine.combine(
      adapters, model: model.config, options: .init(method: .cat, weights: reference.weights))
    #expect(cat.config.r == 6 && cat.config.loraAlpha == 6 && leftOut.isEmpty && modules.count == 14)
    let peft = try LoRAAdapter.loadPEFT(from: ExportFixtures.path("combine-cat"), model: model.config)
    for (ours, theirs) in zip(cat.modules, peft.modules) {
      #expect(ours.a.values == theirs.a.values && ours.b.values == theirs.b.values, "\(ours.name)")
    }
    Self.expectLogits(model, cat, reference.logits["cat"]!, "cat")
    for (index, module) in cat.modules.enumerated() {
      let sum = zip(adapters, reference.weights).map { adapter, weight in
        ExportFixtures.delta(adapter.modules[index]).values.map { Double($0) * weight }
      }.reduce([Double](repeating: 0, count: module.outFeatures * module.inFeatures)) { zip($0, $1).map(+) }
      let got = ExportFixtures.delta(module).values.map(Double.init)
      let scale = sum.map(abs).max()!
      #expect(zip(got, sum).allSatisfy { abs($0 - $1) <= 1e-5 * scale }, "\(module.name)")
    }
  }

  @Test func svdAtFullRankIsExactAndEqualsPEFT() throws {
    let (model, adapters, reference) = try Self.setup()
    let options = AdapterCombine.Options(method: .svd, weights: reference.weights, rank: 6)
    let (svd, modules, _) = try AdapterCombine.combine(adapters, model: model.config, options: options)
    #expect(modules.allSatisfy { abs($0.energyKept - 1) < 1e-12 })
    let (cat, _, _) = try AdapterCombine.combine(
      adapters, model: model.config, options: .init(method: .cat, weights: reference.weights))
    for (x, y) in zip(svd.modules, cat.modules) {
      let scale = ExportFixtures.maxAbs(ExportFixtures.delta(y).values)
      #expect(
        ExportFixtures.maxDifference(ExportFixtures.delta(x).values, ExportFixtures.delta(y).values) <= 1e-5
          * scale)
    }
    Self.expectLogits(model, svd, reference.logits["svd"]!, "svd")
    // Cut to rank 2: less than all of the energy.
    let (small, kept, _) = try AdapterCombine.combine(
      adapters, model: model.config, options: .init(method: .svd, weights: reference.weights, rank: 2))
    #expect(small.config.r == 2 && kept.allSatisfy { $0.energyKept < 1 })
  }

  @Test func tiesEqualsPEFTsTiesSVD() throws {
    let (model, adapters, reference) = try Self.setup()
    let (ties, _, _) = try AdapterCombine.combine(
      adapters, model: model.config,
      options: .init(method: .ties, weights: reference.weights, rank: 3, density: 0.5))
    Self.expectLogits(model, ties, reference.logits["ties_svd"]!, "ties")
  }

  @Test func dareIsSeededAndAtDensityOneIsTheSum() throws {
    let (model, adapters, reference) = try Self.setup()
    func dare(_ method: AdapterCombine.Method, density: Double, seed: UInt64) throws -> [Float] {
      let options = AdapterCombine.Options(
        method: method, weights: reference.weights, rank: 6, density: density, seed: seed)
      return try AdapterCombine.combine(adapters, model: model.config, options: options).adapter.parameters
        .values
    }
    #expect(try dare(.dareLinear, density: 0.5, seed: 1) == dare(.dareLinear, density: 0.5, seed: 1))
    #expect(try dare(.dareLinear, density: 0.5, seed: 1) != dare(.dareLinear, density: 0.5, seed: 2))
    #expect(try dare(.dareTies, density: 0.3, seed: 1) != dare(.dareLinear, density: 0.3, seed: 1))
    let (svd, _, _) = try AdapterCombine.combine(
      adapters, model: model.config, options: .init(method: .svd, weights: reference.weights, rank: 6))
    let (full, _, _) = try AdapterCombine.combine(
      adapters, model: model.config, options: .init(method: .dareLinear, weights: reference.weights, rank: 6))
    for (x, y) in zip(full.modules, svd.modules) {
      let scale = ExportFixtures.maxAbs(ExportFixtures.delta(y).values)
      #expect(
        ExportFixtures.maxDifference(ExportFixtures.delta(x).values, ExportFixtures.delta(y).values) <= 1e-5
          * scale)
    }
  }

  @Test func badRequestsAreRefusedNamingWhatIsWrong() throws {
    let (model, adapters, _) = try Self.setup()
    func error(_ options: AdapterCombine.Options, _ inputs: [LoRAAdapter]? = nil) -> String? {
      do {
        _ = try AdapterCombine.combine(inputs ?? adapters, model: model.config, options: options)
        return nil
      } catch { return "\(error)" }
    }
    #expect(
      error(.init(method: .cat, weights: [1])) == "1 weights for 2 adapters: give one weight per adapter")
    #expect(
      error(.init(method: .svd, weights: [0, 0]))?.hasPrefix("the weights must be finite numbers") == true)
    #expect(
      error(.init(method: .ties, weights: [1, 1], density: 0)) == "--density must be in (0, 1], got 0.0")
    #expect(
      error(.init(method: .svd, weights: [1, 1], rank: 40))
        == "rank 40 is not possible for model.layers.0.self_attn.q_proj: it must be between 1 and 32 (its weight is 32×32)"
    )
    // Adapters of other modules: named, or combined on the shared ones with skipMissing.
    let qv = try LoRAAdapter(config: LoRAConfig(r: 2, loraAlpha: 4), model: model.config, seed: 1)
    ExportFixtures.randomize(qv, seed: 1)
    let message = error(.init(method: .cat, weights: [1, 1]), [adapters[0], qv])
    #expect(
      message?.hasPrefix(
        "the adapters do not adapt the same modules: model.layers.0.mlp.down_proj (only in adapter 1); ")
        == true
        && message?.hasSuffix("and 4 more; pass --skip-missing to combine only the modules they share")
          == true,
      "\(message ?? "")")
    let (shared, _, leftOut) = try AdapterCombine.combine(
      [adapters[0], qv], model: model.config,
      options: .init(method: .cat, weights: [1, 1], skipMissing: true))
    #expect(shared.modules.map(\.target) == [.q, .v, .q, .v] && leftOut.count == 10)
  }
}
