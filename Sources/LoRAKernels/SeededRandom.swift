import Foundation

/// A small, fast, seedable generator (xoshiro256**, seeded through SplitMix64): the same
/// seed gives the same sequence on every machine, which `RandomNumberGenerator`'s system
/// generator does not.
public struct SeededRandom: RandomNumberGenerator, Sendable, Codable, Equatable {
  private var s0, s1, s2, s3: UInt64

  public init(seed: UInt64) {
    var x = seed
    func splitMix() -> UInt64 {
      x &+= 0x9E37_79B9_7F4A_7C15
      var z = x
      z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
      z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
      return z ^ (z >> 31)
    }
    s0 = splitMix()
    s1 = splitMix()
    s2 = splitMix()
    s3 = splitMix()
  }

  public mutating func next() -> UInt64 {
    let result = ((s1 &* 5) << 7 | (s1 &* 5) >> 57) &* 9
    let t = s1 << 17
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = s3 << 45 | s3 >> 19
    return result
  }

  /// A uniform Float in [0, 1) with 24 random bits.
  public mutating func nextUnitFloat() -> Float { Float(next() >> 40) / Float(1 << 24) }
}

extension SeededRandom {
  /// Fills `t` with N(0, std²) draws, two per pair of uniforms (Box–Muller).
  public mutating func fillNormal(_ t: Tensor, std: Float = 1) {
    var i = 0
    while i < t.count {
      let u1 = max(nextUnitFloat(), 1e-7)
      let u2 = nextUnitFloat()
      let radius = (-2 * Foundation.log(u1)).squareRoot()
      t[i] = std * radius * Foundation.cos(2 * .pi * u2)
      if i + 1 < t.count { t[i + 1] = std * radius * Foundation.sin(2 * .pi * u2) }
      i += 2
    }
  }

  /// Fills `t` with U(−bound, bound) draws.
  public mutating func fillUniform(_ t: Tensor, bound: Float) {
    for i in 0..<t.count { t[i] = (2 * nextUnitFloat() - 1) * bound }
  }
}
