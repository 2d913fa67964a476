import Foundation
import LoRAKernels

/// Picks the next token from logits: greedy (temperature 0) or temperature with nucleus
/// (top-p) sampling from a seeded generator, so a seed reproduces a generation.
public struct Sampler: Sendable {
  public var temperature: Float
  public var topP: Float
  private var random: SeededRandom

  public init(temperature: Float = 0, topP: Float = 1, seed: UInt64 = 0) {
    self.temperature = temperature
    self.topP = topP
    self.random = SeededRandom(seed: seed)
  }

  /// - logits: [V] (one row).
  public mutating func next(_ logits: Tensor) -> Int32 {
    let values = logits.values
    guard temperature > 0 else {
      var best = 0
      for i in 1..<values.count where values[i] > values[best] { best = i }
      return Int32(best)
    }
    let maximum = values.max() ?? 0
    var weights = values.map { exp(Double(($0 - maximum) / temperature)) }
    let total = weights.reduce(0, +)
    for i in weights.indices { weights[i] /= total }
    // Keep the smallest set of most likely tokens whose mass reaches topP.
    let order = weights.indices.sorted { weights[$0] > weights[$1] }
    var kept: [Int] = []
    var mass = 0.0
    for i in order {
      kept.append(i)
      mass += weights[i]
      if mass >= Double(topP) { break }
    }
    var pick = Double(random.nextUnitFloat()) * mass
    for i in kept {
      pick -= weights[i]
      if pick <= 0 { return Int32(i) }
    }
    return Int32(kept.last ?? 0)
  }
}
