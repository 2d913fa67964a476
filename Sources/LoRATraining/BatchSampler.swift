import LoRAKernels

/// Which examples each rank trains on at each step, the same for any number of ranks.
///
/// The global sample order is the concatenation of one permutation of the N examples per
/// epoch (epoch e shuffled with a seed derived from `seed` and e, or the identity when
/// `shuffle` is false). Step s consumes global positions [s·G, (s+1)·G) of that order, G the
/// global batch; of R ranks, rank r takes the contiguous slice r·(G/R) ..< (r+1)·(G/R) of the
/// step's samples. So a run's position in the data depends only on the step, never on R,
/// and the union of the ranks' slices at a step is the one-rank batch.
public struct BatchSampler: Sendable, Codable, Equatable {
  /// N, the number of examples.
  public let exampleCount: Int
  /// G, the samples consumed per step over all ranks.
  public let globalBatch: Int
  public let seed: UInt64
  public let shuffle: Bool

  public init(exampleCount: Int, globalBatch: Int, seed: UInt64, shuffle: Bool) {
    self.exampleCount = exampleCount
    self.globalBatch = globalBatch
    self.seed = seed
    self.shuffle = shuffle
  }

  /// The G/R example indices (into the N examples) rank `rank` of `ranks` trains on at `step`,
  /// in global order.
  ///
  /// - Throws: `DataError.invalidOption` when N or G is not positive, G is not divisible by
  ///   `ranks`, `rank` is not in 0..<ranks, or `step` is negative.
  public func indices(step: Int, rank: Int, ranks: Int) throws(DataError) -> [Int] {
    guard exampleCount > 0 else { throw .invalidOption("the sampler has no examples") }
    guard globalBatch > 0 else {
      throw .invalidOption("global batch must be positive, got \(globalBatch)")
    }
    guard ranks > 0, globalBatch % ranks == 0 else {
      throw .invalidOption("global batch \(globalBatch) is not divisible by \(ranks) ranks")
    }
    guard (0..<ranks).contains(rank) else {
      throw .invalidOption("rank \(rank) is not in 0..<\(ranks)")
    }
    guard step >= 0 else { throw .invalidOption("step must not be negative, got \(step)") }

    let perRank = globalBatch / ranks
    let first = globalPosition(step: step) + rank * perRank
    var result: [Int] = []
    result.reserveCapacity(perRank)
    var epoch = -1
    var order: [Int] = []
    for position in first..<(first + perRank) {
      let (positionEpoch, offset) = position.quotientAndRemainder(dividingBy: exampleCount)
      if positionEpoch != epoch {
        epoch = positionEpoch
        order = self.order(epoch: epoch)
      }
      result.append(order[offset])
    }
    return result
  }

  /// The first global position step `step` consumes, step·G.
  public func globalPosition(step: Int) -> Int {
    step * globalBatch
  }

  /// Epochs completed before step `step` starts, step·G / N (fractional); 0 when N is 0.
  public func epoch(step: Int) -> Double {
    guard exampleCount > 0 else { return 0 }
    return Double(globalPosition(step: step)) / Double(exampleCount)
  }

  /// The N example indices in the order epoch `epoch` visits them.
  func order(epoch: Int) -> [Int] {
    guard shuffle else { return Array(0..<exampleCount) }
    let epochSeed = SeededRandom.mix(seed ^ SeededRandom.mix(UInt64(epoch) &+ 0x6A09_E667_F3BC_C909))
    return SeededRandom.permutation(count: exampleCount, seed: epochSeed)
  }
}

extension SeededRandom {
  /// A uniformly random permutation of 0..<count (Fisher–Yates, drawn from the back, with
  /// Lemire's unbiased bounded integers), the same on every machine for the same seed.
  static func permutation(count: Int, seed: UInt64) -> [Int] {
    var order = Array(0..<count)
    var random = SeededRandom(seed: seed)
    var index = count - 1
    while index > 0 {
      order.swapAt(index, Int(random.uniform(below: UInt64(index + 1))))
      index -= 1
    }
    return order
  }

  /// A uniform integer in 0..<bound, bound > 0 (Lemire's multiply-and-reject).
  mutating func uniform(below bound: UInt64) -> UInt64 {
    var product = next().multipliedFullWidth(by: bound)
    if product.low < bound {
      let threshold = (0 &- bound) % bound
      while product.low < threshold { product = next().multipliedFullWidth(by: bound) }
    }
    return product.high
  }

  /// SplitMix64's finalizer: a bijective mix of 64 bits, for deriving seeds.
  static func mix(_ value: UInt64) -> UInt64 {
    var z = value &+ 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}
