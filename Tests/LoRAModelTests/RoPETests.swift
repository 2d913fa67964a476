import Foundation
import LoRAKernels
import Testing

@testable import LoRAModel

@Suite struct RoPETests {
  @Test func rotatesPairsHalfAHeadApart() {
    // HS = 4: pairs (0, 2) and (1, 3) rotate by position · theta^(-2i/HS).
    let table = RoPETable(headSize: 4, maxPositions: 8, inverseFrequencies: [1, 0.01])
    let x = Tensor(shape: [1, 1, 4], values: [1, 2, 3, 4])
    table.forward(x, heads: 1, positions: [3])
    let (c0, s0, c1, s1) = (Float(cos(3.0)), Float(sin(3.0)), Float(cos(0.03)), Float(sin(0.03)))
    let expected: [Float] = [1 * c0 - 3 * s0, 2 * c1 - 4 * s1, 3 * c0 + 1 * s0, 4 * c1 + 2 * s1]
    for (a, b) in zip(x.values, expected) { #expect(abs(a - b) < 1e-6) }
  }

  @Test func llama3ScalingLeavesHighFrequenciesAndDividesLowOnes() {
    let plain = RoPETable.inverseFrequencies(headSize: 128, theta: 500_000)
    let scaled = RoPETable.inverseFrequencies(
      headSize: 128, theta: 500_000, scalingType: "llama3", factor: 8, lowFrequencyFactor: 1,
      highFrequencyFactor: 4, originalContextLength: 8192)
    #expect(scaled[0] == plain[0])  // wavelength 2π: far below 8192 / 4
    #expect(abs(scaled[63] - plain[63] / 8) < 1e-18)  // the lowest frequency is divided by the factor
    #expect(zip(scaled, plain).allSatisfy { $0 <= $1 })
  }

  @Test func linearScalingDividesEveryFrequency() {
    let plain = RoPETable.inverseFrequencies(headSize: 8, theta: 10_000)
    let scaled = RoPETable.inverseFrequencies(headSize: 8, theta: 10_000, scalingType: "linear", factor: 2)
    for (a, b) in zip(scaled, plain) { #expect(abs(a - b / 2) < 1e-15) }
  }
}
