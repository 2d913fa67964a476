import Foundation
import Testing

@testable import LoRAKernels

@Suite struct VectorMathTests {
  /// Relative error of the vector exp against Double exp over the float range it covers.
  @Test func expIsWithinTwoUlp() {
    var worst = 0.0
    var x: Float = -87.25
    while x < 88.7 {
      var v = VectorMath.Vector()
      for i in 0..<VectorMath.width { v[i] = x + Float(i) * 0.000_37 }
      let e = VectorMath.exp(v)
      for i in 0..<VectorMath.width {
        let exact = Foundation.exp(Double(v[i]))
        worst = max(worst, abs(Double(e[i]) - exact) / exact)
      }
      x += 0.003_1
    }
    #expect(worst < 2.5e-7)
  }

  @Test func expEdges() {
    let v = VectorMath.Vector(-.infinity, -200, -87.4, 0, 88.5, 89, .infinity, .nan)
    let e = VectorMath.exp(v)
    #expect(e[0] == 0 && e[1] == 0 && e[2] == 0)
    #expect(e[3] == 1)
    #expect(abs(Double(e[4]) / Foundation.exp(88.5) - 1) < 1e-6)
    #expect(e[5] == .infinity && e[6] == .infinity)
    #expect(e[7].isNaN)
  }

  /// maximum, exponentiate and scale on lengths around the vector width: a softmax.
  @Test(arguments: [1, 7, 8, 9, 300, 517])
  func softmaxPasses(count: Int) {
    let t = randomTensor([count], seed: UInt64(count))
    for i in 0..<count { t[i] *= 30 }
    let values = t.values
    let maximum = VectorMath.maximum(t.base, count: count)
    #expect(maximum == values.max()!)
    let sum = VectorMath.exponentiate(t.base, count: count, shift: maximum)
    let exact = values.map { Foundation.exp(Double($0 - maximum)) }
    #expect(abs(sum / exact.reduce(0, +) - 1) < 1e-6)
    VectorMath.scale(t.base, count: count, by: Float(1 / sum))
    for i in 0..<count { #expect(abs(Double(t[i]) - exact[i] / sum) < 1e-6) }
  }

  /// SwiGLU on a length that leaves partial vectors at the ends of the thread ranges equals
  /// the scalar formula, forward and backward.
  @Test func swiGLUTailsMatchTheFormula() {
    let n = 4096 * 3 + 13
    let gate = randomTensor([n], seed: 5)
    let up = randomTensor([n], seed: 6)
    let dout = randomTensor([n], seed: 7)
    for i in 0..<n { gate[i] *= 12 }
    let out = Tensor(zeros: [n])
    let (dgate, dup) = (Tensor(zeros: [n]), Tensor(zeros: [n]))
    SwiGLU.forward(out, gate: gate, up: up)
    SwiGLU.backward(dgate: dgate, dup: dup, dout: dout, gate: gate, up: up)
    var worst = 0.0
    for i in 0..<n {
      let x = Double(gate[i])
      let s = 1 / (1 + Foundation.exp(-x))
      let expected = [
        x * s * Double(up[i]), Double(dout[i]) * Double(up[i]) * s * (1 + x * (1 - s)),
        Double(dout[i]) * x * s,
      ]
      for (got, want) in zip([out[i], dgate[i], dup[i]], expected) {
        worst = max(worst, abs(Double(got) - want) / max(abs(want), 1e-3))
      }
    }
    #expect(worst < 1e-5)
  }
}
