import Foundation
import LoRAKernels
import LoRAModel

/// What a token costs: the seconds one rank takes to train one token of an adapter, plus
/// how much fusing adapters gains.
///
/// The default is built from FLOPs per token (``flopsPerToken(_:lora:length:)``, the formula
/// `bench` reports against) and an achieved GFLOP/s per rank: 60, i.e. 120 GFLOP/s measured
/// by `bench` on this project's 2-core machine, one core per rank. Give another figure for
/// other machines or ranks with more threads (`plan --gflops`).
public struct CostModel: Sendable {
  /// GFLOP/s one rank achieves in training (the default model's figure; 0 for a custom one).
  public var gflopsPerRank: Double
  /// Throughput factor of a fused group of two or more adapters over training them one
  /// after another (1: no gain; above 1: faster).
  public var fusedEfficiency: Double
  /// Cost of a validation token relative to a training token (forward pass only).
  public var evaluationShare: Double
  /// Seconds one rank takes per trained token of `adapter` with sequences of `length` tokens.
  public var secondsPerToken: @Sendable (_ adapter: AdapterJob, _ length: Int) -> Double

  /// GFLOP/s per rank the default assumes: 120 measured on 2 cores, one core per rank.
  public static let defaultGFLOPsPerRank = 60.0

  /// The default for a base held in `precision`: a bf16 base trains 1.6× as fast on CPUs
  /// with native bf16 (`bench`, docs/benchmarks.md).
  public static func defaultGFLOPsPerRank(_ precision: StoredPrecision) -> Double {
    precision == .bf16 ? 1.6 * defaultGFLOPsPerRank : defaultGFLOPsPerRank
  }

  /// The FLOP-based model for `model`'s shape.
  public init(model: LlamaConfig, gflopsPerRank: Double = defaultGFLOPsPerRank, fusedEfficiency: Double = 1) {
    self.gflopsPerRank = gflopsPerRank
    self.fusedEfficiency = fusedEfficiency
    evaluationShare = 1.0 / 3
    secondsPerToken = { adapter, length in
      CostModel.flopsPerToken(model, lora: adapter.settings.loraConfig, length: length)
        / (gflopsPerRank * 1e9)
    }
  }

  /// A model with its own seconds per token (measured ones, or a constant in tests).
  public init(
    fusedEfficiency: Double = 1, evaluationShare: Double = 1.0 / 3,
    secondsPerToken: @escaping @Sendable (_ adapter: AdapterJob, _ length: Int) -> Double
  ) {
    gflopsPerRank = 0
    self.fusedEfficiency = fusedEfficiency
    self.evaluationShare = evaluationShare
    self.secondsPerToken = secondsPerToken
  }

  /// Model FLOPs to train one token, the formula `bench` and the planner share
  /// (docs/benchmarks.md): frozen products forward and input-gradient backward (2 + 2 per
  /// weight; no weight gradient), attention over `length` keys (forward q·kᵀ and p·v,
  /// 4·T·H·HS per layer; backward twice that), and the LoRA products of every adapted
  /// module (forward 2·r·(IN+OUT), backward 4·r·(IN+OUT)); virtual tokens as noted below.
  public static func flopsPerToken(_ c: LlamaConfig, lora: LoRAConfig, length: Int) -> Double {
    let q = c.heads * c.headSize
    let kv = c.kvHeads * c.headSize
    let perLayer = c.hiddenSize * (2 * q + 2 * kv) + 3 * c.hiddenSize * c.intermediateSize
    let linear = Double(c.layers * perLayer + c.vocabularySize * c.hiddenSize)
    // Virtual tokens: attention reads N more keys; prompt tuning's N rows also pass every
    // product, which a sequence's tokens share (N per `length` tokens).
    let virtual = lora.virtualTokens?.tokens ?? 0
    let rows = lora.virtualTokens?.kind == .prompt ? Double(length + virtual) / Double(max(length, 1)) : 1
    let attention = 12 * Double(c.layers * (length + virtual) * q)
    let targets = (try? lora.targets()) ?? []
    let layers = Set(lora.layersToTransform ?? Array(0..<c.layers)).sorted()  // each module once, as LoRAAdapter
    var adapterFLOPs = 0.0
    for layer in layers where layer < c.layers {
      for target in targets {
        let (out, inFeatures) = target.shape(c)
        let rank = lora.rankAndAlpha(module: target.moduleName(layer: layer)).rank
        adapterFLOPs += 6 * Double(rank * (inFeatures + out))
      }
    }
    return rows * (4 * linear + attention + adapterFLOPs)
  }
}
