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

  /// The paths of the array exps this machine can run: the Swift exp, and libmvec's when
  /// the CPU has AVX2 or AVX-512.
  static let paths = VectorMath.libraryWidth > 0 ? [false, true] : [false]

  /// libmvec's exp (through `exponentiate`) over the same range as the Swift one, and its
  /// edges: within 2 ulp of Double exp, 0 for −∞, +∞ past the float range, NaN kept.
  @Test(.enabled(if: VectorMath.libraryWidth > 0, "the CPU has neither AVX2 nor AVX-512"))
  func libraryExpIsWithinTwoUlp() {
    let xs = stride(from: Float(-87.25), to: 88.7, by: 0.000_93).map { $0 }
    var values = xs
    values.withUnsafeMutableBufferPointer { p in
      _ = VectorMath.exponentiate(p.baseAddress!, count: p.count, shift: 0, library: true)
    }
    var worst = 0.0
    for (x, e) in zip(xs, values) {
      let exact = Foundation.exp(Double(x))
      worst = max(worst, abs(Double(e) - exact) / exact)
    }
    #expect(worst < 2.5e-7)
    var edges: [Float] = [-.infinity, -200, 0, 89, .infinity, .nan]
    edges.withUnsafeMutableBufferPointer { p in
      _ = VectorMath.exponentiate(p.baseAddress!, count: p.count, shift: 0, library: true)
    }
    #expect(edges[0] == 0 && edges[1] == 0 && edges[2] == 1)
    #expect(edges[3] == .infinity && edges[4] == .infinity && edges[5].isNaN)
  }

  /// withNegatedExp visits every element once, in groups of eight (the last partial), with
  /// e^−x on either path, on lengths around the vector width and libmvec's chunk.
  @Test(arguments: [1, 7, 8, 9, 255, 256, 257, 600])
  func negatedExpGroups(count: Int) {
    let t = randomTensor([count], seed: UInt64(count) + 100)
    for i in 0..<count { t[i] *= 20 }
    for library in Self.paths {
      var seen = [Int](repeating: 0, count: count)
      var worst = 0.0
      VectorMath.withNegatedExp(t.base, count: count, library: library) { i, lanes, e in
        #expect(i % VectorMath.width == 0 && lanes == min(VectorMath.width, count - i))
        for l in 0..<lanes {
          seen[i + l] += 1
          let exact = Foundation.exp(-Double(t[i + l]))
          worst = max(worst, abs(Double(e[l]) - exact) / exact)
        }
      }
      #expect(seen.allSatisfy { $0 == 1 }, "library \(library)")
      #expect(worst < 2.5e-7, "library \(library)")
    }
  }

  /// maximum, exponentiate and scale on lengths around the vector width: a softmax.
  @Test(arguments: [1, 7, 8, 9, 300, 517], [false, true])
  func softmaxPasses(count: Int, library: Bool) {
    guard Self.paths.contains(library) else { return }
    let t = randomTensor([count], seed: UInt64(count))
    for i in 0..<count { t[i] *= 30 }
    let values = t.values
    let maximum = VectorMath.maximum(t.base, count: count)
    #expect(maximum == values.max()!)
    let sum = VectorMath.exponentiate(t.base, count: count, shift: maximum, library: library)
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
