import Foundation
import LoRAKernels
import LoRAModel
import Testing

@testable import LoRACheckpoint

/// The SVD of ΔW through its r×r core against the dense ΔW, the subspace similarity's bounds
/// and symmetry, and the measures against the frozen weight.
@Suite struct AdapterAnalysisTests {
  static let tinyModel = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("../LoRAModelTests/Fixtures/tiny-tied").standardized.path

  static func adapter(rank: Int, seed: UInt64) throws -> (LlamaModel, LoRAAdapter) {
    let (model, _) = try LlamaModel.load(path: tinyModel)
    let adapter = try LoRAAdapter(config: LoRAConfig(r: rank, loraAlpha: 8), model: model.config, seed: seed)
    ExportFixtures.randomize(adapter, seed: seed)
    return (model, adapter)
  }

  @Test func coreSVDEqualsTheDenseSVD() throws {
    let (_, adapter) = try Self.adapter(rank: 4, seed: 1)
    for module in adapter.modules {
      let svd = try DeltaSVD(module)
      let dense = ExportFixtures.delta(module).values.map(Double.init)
      let direct = try LAPACK.svd(
        dense, rows: module.outFeatures, columns: module.inFeatures, subject: "dense")
      let scale = direct.s[0]
      for (a, b) in zip(svd.values, direct.s.prefix(module.rank)) { #expect(abs(a - b) <= 1e-5 * scale) }
      // Beyond the rank, the dense ΔW has nothing.
      #expect(direct.s.dropFirst(module.rank).allSatisfy { $0 <= 1e-5 * scale })
      #expect(zip(svd.dense(), dense).allSatisfy { abs($0 - $1) <= 1e-5 * scale }, "\(module.name)")
    }
  }

  @Test func ranksAndEnergyOfAKnownSpectrum() throws {
    // ΔW = B·A with B = diag-like [4, 2] and A = [2, 3]: singular values 3 and 1 (scale 1).
    let a: [Double] = [1, 0, 0, 0, 1, 0]
    let b: [Double] = [3, 0, 0, 1, 0, 0, 0, 0]
    let svd = try DeltaSVD(a: a, b: b, scale: 1, rank: 2, inFeatures: 3, outFeatures: 4, name: "known")
    #expect(abs(svd.values[0] - 3) < 1e-12 && abs(svd.values[1] - 1) < 1e-12)
    #expect(abs(svd.energy(top: 1) - 0.9) < 1e-12 && svd.energy(top: 2) == 1)
    #expect(svd.rank(keeping: 0.9) == 1 && svd.rank(keeping: 0.95) == 2)
    #expect(abs(svd.stableRank - 10.0 / 9) < 1e-12)
    let p = [0.75, 0.25]
    #expect(abs(svd.effectiveRank - exp(-(p[0] * log(p[0]) + p[1] * log(p[1])))) < 1e-12)
  }

  @Test func similarityIsBoundedSymmetricAndOneOnItself() throws {
    let (_, small) = try Self.adapter(rank: 2, seed: 2)
    let (_, large) = try Self.adapter(rank: 6, seed: 3)
    for (x, y) in zip(small.modules, large.modules) {
      let a = try DeltaSVD(x)
      let b = try DeltaSVD(y)
      let ab = SubspaceSimilarity(a, b, maxI: 2, maxJ: 6)
      let ba = SubspaceSimilarity(b, a, maxI: 6, maxJ: 2)
      for i in 0..<2 {
        for j in 0..<6 {
          #expect(ab.phi[i][j] >= 0 && ab.phi[i][j] <= 1)
          #expect(abs(ab.phi[i][j] - ba.phi[j][i]) < 1e-12)
        }
      }
      let itself = SubspaceSimilarity(b, b, maxI: 6, maxJ: 6)
      for i in 0..<6 { #expect(abs(itself.phi[i][i] - 1) < 1e-9) }
      // A larger span holds a smaller one: φ(i, j) = 1 for j ≥ i on the same directions.
      #expect(abs(itself.phi[1][4] - 1) < 1e-9)
    }
  }

  @Test func orthogonalSubspacesScoreZeroAndRandomOnesTheirExpectation() throws {
    let e1 = DeltaSVDFixture.axis(0, of: 4)
    let e2 = DeltaSVDFixture.axis(1, of: 4)
    #expect(SubspaceSimilarity(side: .right, x: e1, y: e2, dimension: 4, maxI: 1, maxJ: 1).phi == [[0]])
    #expect(SubspaceSimilarity(side: .right, x: e1, y: e1, dimension: 4, maxI: 1, maxJ: 1).phi == [[1]])
    // E φ(i, j) = max(i, j) / N for random subspaces; averaged over a 16×16 grid of N = 256.
    let random = try SubspaceSimilarity.randomBaseline(dimension: 256, maxI: 16, maxJ: 16, seed: 9)
    var (observed, expected) = (0.0, 0.0)
    for i in 1...16 {
      for j in 1...16 {
        observed += random.phi[i - 1][j - 1]
        expected += Double(max(i, j)) / 256
      }
    }
    #expect(abs(observed / expected - 1) < 0.25, "\(observed / 256) against \(expected / 256)")
  }

  @Test func anUpdateAlongTheBasesTopDirectionsIsInsideThem() throws {
    // W = diag(5, 4, 3, 2, 1) [5, 5]; ΔW = 2·e₁e₁ᵀ lies in W's top-1 direction.
    var w = [Double](repeating: 0, count: 25)
    for i in 0..<5 { w[i * 5 + i] = Double(5 - i) }
    let along = try DeltaSVD(
      a: DeltaSVDFixture.axis(0, of: 5), b: DeltaSVDFixture.axis(0, of: 5), scale: 2, rank: 1, inFeatures: 5,
      outFeatures: 5, name: "along")
    let measures = try Amplification(along, base: w, seed: 1)
    #expect(abs(measures.deltaInBaseTopDirections - 1) < 1e-12)
    #expect(
      abs(measures.baseOnDeltaDirections - 5) < 1e-12 && abs(measures.baseOnItsTopDirections - 5) < 1e-12)
    #expect(abs((measures.factor ?? 0) - 0.4) < 1e-12)
    // Along W's weakest direction: outside its top-1, and amplified 2 / 1.
    let across = try DeltaSVD(
      a: DeltaSVDFixture.axis(4, of: 5), b: DeltaSVDFixture.axis(4, of: 5), scale: 2, rank: 1, inFeatures: 5,
      outFeatures: 5, name: "across")
    let other = try Amplification(across, base: w, seed: 1)
    #expect(other.deltaInBaseTopDirections < 1e-12 && abs((other.factor ?? 0) - 2) < 1e-12)
  }

  @Test func analysisOfTwoAdaptersComparesEveryModule() throws {
    let (model, small) = try Self.adapter(rank: 2, seed: 2)
    let (_, large) = try Self.adapter(rank: 6, seed: 3)
    let analysis = try AdapterAnalysis(
      adapters: [(small, "r2"), (large, "r6")], model: model, readBase: true, seed: 0)
    #expect(analysis.modules.map(\.count) == [small.modules.count, large.modules.count])
    #expect(analysis.comparisons.count == small.modules.count && analysis.unmatched.isEmpty)
    #expect(
      analysis.comparisons.allSatisfy { $0.similarity.phi.count == 2 && $0.similarity.phi[0].count == 6 })
    #expect(analysis.modules[0].allSatisfy { $0.amplification != nil && $0.energy.last == 1 })
    let data = try JSONEncoder().encode(analysis)
    #expect(try JSONDecoder().decode(AdapterAnalysis.self, from: data) == analysis)
  }

  @Test func modulesOnlyOneAdapterHasAreNamed() throws {
    let (model, both) = try Self.adapter(rank: 2, seed: 2)
    let qOnly = try LoRAAdapter(
      config: LoRAConfig(r: 2, loraAlpha: 8, targetModules: ["q_proj"]), model: model.config, seed: 4)
    ExportFixtures.randomize(qOnly, seed: 4)
    let analysis = try AdapterAnalysis(adapters: [(both, "qv"), (qOnly, "q")], model: model, readBase: false)
    #expect(analysis.comparisons.allSatisfy { $0.name.hasSuffix("q_proj") })
    #expect(analysis.unmatched.count == model.config.layers)
    #expect(analysis.unmatched.first == "model.layers.0.self_attn.v_proj (only in the first adapter)")
  }
}

enum DeltaSVDFixture {
  /// The unit vector eₖ of ℝⁿ.
  static func axis(_ k: Int, of n: Int) -> [Double] { (0..<n).map { $0 == k ? 1 : 0 } }
}
