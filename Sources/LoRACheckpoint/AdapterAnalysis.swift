import Foundation
import LoRAKernels
import LoRAModel

/// What `analyze` reports of one or two adapters, per adapted module: the spectrum of ΔW,
/// its ranks, how it sits against the frozen weight, and (for two adapters) how much their
/// top directions overlap, beside random subspaces of the same sizes.
public struct AdapterAnalysis: Sendable, Codable, Equatable {
  /// One module of one adapter.
  public struct Module: Sendable, Codable, Equatable {
    public var name: String
    public var layer: Int
    public var target: String
    public var rank: Int
    public var outFeatures: Int
    public var inFeatures: Int
    /// σ₁ ≥ … ≥ σ_R of ΔW.
    public var singularValues: [Double]
    /// energy[k − 1]: the share of ‖ΔW‖_F² in the top k singular values.
    public var energy: [Double]
    public var frobeniusNorm: Double
    public var effectiveRank: Double
    public var stableRank: Double
    /// The fewest singular values keeping 90% and 99% of ‖ΔW‖_F².
    public var rankFor90: Int
    public var rankFor99: Int
    /// Against the frozen weight (nil when the base was not read).
    public var amplification: Amplification?
  }

  /// Two adapters' updates of one module compared.
  public struct Comparison: Sendable, Codable, Equatable {
    public var name: String
    /// φ over the right singular vectors (the input space), i ≤ min(R₁, 64), j ≤ min(R₂, 64).
    public var similarity: SubspaceSimilarity
    /// The same for random Gaussian subspaces of the same sizes.
    public var randomBaseline: SubspaceSimilarity
  }

  /// Each adapter's description (where it came from).
  public var adapters: [String]
  /// Per adapter, its modules in layer, then target order.
  public var modules: [[Module]]
  /// With two adapters: the modules both adapt, compared.
  public var comparisons: [Comparison]
  /// With two adapters: modules only one adapts, or adapts with another shape, named.
  public var unmatched: [String]

  /// The most directions φ is computed over on each side.
  public static let maxDirections = 64

  /// Analyses `adapters` (one or two) on `model`; `readBase` also measures each update
  /// against its frozen weight (`Amplification`). Random baselines are drawn from `seed`.
  public init(
    adapters: [(adapter: LoRAAdapter, description: String)], model: LlamaModel, readBase: Bool,
    seed: UInt64 = 0
  ) throws {
    precondition((1...2).contains(adapters.count), "analyze takes one or two adapters")
    self.adapters = adapters.map(\.description)
    var decompositions: [[String: DeltaSVD]] = []
    modules = []
    for (adapter, description) in adapters where adapter.modules.isEmpty {
      throw LoRAConfigError(
        "\(description) has no LoRA modules to analyse (\(adapter.config.virtualTokens?.summary ?? "no modules"))"
      )
    }
    for (adapter, description) in adapters {
      do { try adapter.requireNoDoRA("rank analysis", instead: "analyse a plain LoRA adapter") } catch {
        throw LoRAConfigError("\(description): \(error)")
      }
      var svds: [String: DeltaSVD] = [:]
      var rows: [Module] = []
      for module in adapter.modules {
        let svd = try DeltaSVD(module)
        svds[module.name] = svd
        var amplification: Amplification?
        if readBase {
          let w = model.weights.layers[module.layer].matrix(module.target).widened().values.map(Double.init)
          amplification = try Amplification(svd, base: w, seed: seed &+ UInt64(module.offset))
        }
        rows.append(
          Module(
            name: module.name, layer: module.layer, target: module.target.rawValue, rank: module.rank,
            outFeatures: module.outFeatures, inFeatures: module.inFeatures, singularValues: svd.values,
            energy: (1...svd.rank).map { svd.energy(top: $0) }, frobeniusNorm: svd.squaredNorm.squareRoot(),
            effectiveRank: svd.effectiveRank, stableRank: svd.stableRank, rankFor90: svd.rank(keeping: 0.9),
            rankFor99: svd.rank(keeping: 0.99), amplification: amplification))
      }
      decompositions.append(svds)
      modules.append(rows)
    }
    comparisons = []
    unmatched = []
    guard adapters.count == 2 else { return }
    let (first, second) = (decompositions[0], decompositions[1])
    for name in Set(first.keys).union(second.keys).sorted(by: Self.moduleOrder) {
      guard let x = first[name], let y = second[name] else {
        unmatched.append("\(name) (only in the \(first[name] == nil ? "second" : "first") adapter)")
        continue
      }
      let i = min(x.rank, Self.maxDirections)
      let j = min(y.rank, Self.maxDirections)
      comparisons.append(
        Comparison(
          name: name, similarity: SubspaceSimilarity(x, y, maxI: i, maxJ: j),
          randomBaseline: try SubspaceSimilarity.randomBaseline(
            dimension: x.inFeatures, maxI: i, maxJ: j, seed: seed &+ UInt64(comparisons.count))))
    }
  }

  /// Module names in layer order, then by name ("layers.2" before "layers.10").
  static func moduleOrder(_ a: String, _ b: String) -> Bool {
    (layer(of: a), a) < (layer(of: b), b)
  }

  /// The layer of a module name "model.layers.L.…" (0 when there is none).
  public static func layer(of name: String) -> Int {
    Int(name.split(separator: ".").dropFirst(2).first ?? "") ?? 0
  }
}
