import Foundation

/// Rotary position embedding in Hugging Face's "rotate half" layout: within each head,
/// element i pairs with element i + HS/2.
public final class RoPETable: @unchecked Sendable {
  /// HS
  public let headSize: Int
  public let maxPositions: Int
  /// cos and sin of position · frequency: [maxPositions, HS/2] each.
  let cosines: Tensor
  let sines: Tensor

  /// - frequencies: HS/2 inverse frequencies, `theta^(-2i/HS)`, already scaled.
  public init(headSize: Int, maxPositions: Int, inverseFrequencies: [Double]) {
    precondition(inverseFrequencies.count == headSize / 2)
    self.headSize = headSize
    self.maxPositions = maxPositions
    let half = headSize / 2
    cosines = Tensor(zeros: [maxPositions, half])
    sines = Tensor(zeros: [maxPositions, half])
    for p in 0..<maxPositions {
      for i in 0..<half {
        let angle = Double(p) * inverseFrequencies[i]
        cosines[p * half + i] = Float(cos(angle))
        sines[p * half + i] = Float(sin(angle))
      }
    }
  }

  /// Hugging Face's inverse frequencies for `theta`, with optional "linear" or "llama3" scaling.
  public static func inverseFrequencies(
    headSize: Int, theta: Double, scalingType: String? = nil, factor: Double = 1,
    lowFrequencyFactor: Double = 1,
    highFrequencyFactor: Double = 4, originalContextLength: Int = 8192
  ) -> [Double] {
    let base = (0..<headSize / 2).map { 1 / pow(theta, Double(2 * $0) / Double(headSize)) }
    switch scalingType {
    case "linear":
      return base.map { $0 / factor }
    case "llama3":
      let lowWavelength = Double(originalContextLength) / lowFrequencyFactor
      let highWavelength = Double(originalContextLength) / highFrequencyFactor
      return base.map { frequency in
        let wavelength = 2 * Double.pi / frequency
        if wavelength < highWavelength { return frequency }
        if wavelength > lowWavelength { return frequency / factor }
        let smooth =
          (Double(originalContextLength) / wavelength - lowFrequencyFactor)
          / (highFrequencyFactor - lowFrequencyFactor)
        return (1 - smooth) * frequency / factor + smooth * frequency
      }
    default:
      return base
    }
  }

  /// Rotates every head of every row in place.
  /// - x: [N, heads, HS]; positions: N positions, each < maxPositions.
  public func forward(_ x: Tensor, heads: Int, positions: [Int]) {
    precondition(
      x.count == positions.count * heads * headSize, "RoPE input \(x.shape) for \(positions.count) rows")
    precondition(
      positions.allSatisfy { $0 >= 0 && $0 < maxPositions },
      "a position beyond the RoPE table of \(maxPositions)")
    rotate(x, heads: heads, positions: positions, sign: 1)
  }

  /// Rotates every head of row n by `sign` × the angles of its position.
  private func rotate(_ x: Tensor, heads: Int, positions: [Int], sign: Float) {
    let half = headSize / 2
    let (cosBase, sinBase, xs, size) = (cosines.base, sines.base, x.base, headSize)
    positions.withUnsafeBufferPointer { positionList in
      let list = UncheckedSendable(positionList)
      Parallel.forRanges(positions.count, grain: 32) { range, _ in
        for row in range {
          let c = cosBase + list.value[row] * half
          let s = sinBase + list.value[row] * half
          for h in 0..<heads {
            let v = xs + (row * heads + h) * size
            for i in 0..<half {
              let a = v[i]
              let b = v[i + half]
              v[i] = a * c[i] - sign * b * s[i]
              v[i + half] = b * c[i] + sign * a * s[i]
            }
          }
        }
      }
    }
  }

  /// The gradient of `forward`, in place: rotation by the opposite angle (the transpose of
  /// a rotation is its inverse).
  /// - dx: [N, heads, HS]; positions: N positions.
  public func backward(_ dx: Tensor, heads: Int, positions: [Int]) {
    precondition(
      dx.count == positions.count * heads * headSize, "RoPE gradient \(dx.shape) for \(positions.count) rows")
    rotate(dx, heads: heads, positions: positions, sign: -1)
  }
}
