import Foundation
import Testing

@testable import LoRAKernels

/// Attention's softmax rows and their gradient in C with AVX-512 (`fused`) against the Swift
/// passes and a float64 reference: causal rows, sliding windows and a key offset (a cache or
/// prefix), lengths across the 16-lane and 256-element boundaries, with and without the bf16
/// copy.
@Suite(.enabled(if: VectorMath.fusedRows, "the CPU has no AVX-512 (the Swift passes run there)"))
struct SoftmaxRowTests {
  /// (rows, keys seen by the last row, window, key offset)
  static let shapes: [(rows: Int, offset: Int, window: Int)] = [
    (1, 0, Int.max), (17, 0, Int.max), (64, 0, Int.max), (70, 200, Int.max), (64, 257, Int.max),
    (40, 300, 33),
  ]

  static func geometry(_ shape: (rows: Int, offset: Int, window: Int)) -> Attention.Geometry {
    Attention.Geometry(
      batch: 1, queryLength: shape.rows, keyLength: shape.offset + shape.rows,
      keyStride: shape.offset + shape.rows, heads: 1, kvHeads: 1, headSize: 8, window: shape.window)
  }

  /// Scores with a spread like attention's (about ±6), and a few large ones.
  static func scores(_ count: Int, seed: Int) -> [Float] {
    (0..<count).map { i in
      let x = Float(sin(Double(i * 31 + seed) * 0.173) * 6)
      return i % 97 == 5 ? x + 30 : x
    }
  }

  @Test(arguments: 0..<shapes.count)
  func softmaxRowsMatchTheSwiftPassesAndFloat64(_ index: Int) {
    let shape = Self.shapes[index]
    let g = Self.geometry(shape)
    let visible = shape.offset + shape.rows
    let scores = Self.scores(shape.rows * visible, seed: index)
    var fused = scores  // masked entries hold scores until the softmax zeroes them
    var plain = scores
    var fusedHalves = [UInt16](repeating: 0xFFFF, count: scores.count)
    var plainHalves = [UInt16](repeating: 0, count: scores.count)
    fused.withUnsafeMutableBufferPointer { p in
      fusedHalves.withUnsafeMutableBufferPointer { h in
        g.softmax(
          p.baseAddress!, r0: 0, rows: shape.rows, visible: visible, rounded: h.baseAddress!, fused: true)
      }
    }
    plain.withUnsafeMutableBufferPointer { p in
      plainHalves.withUnsafeMutableBufferPointer { h in
        g.softmax(
          p.baseAddress!, r0: 0, rows: shape.rows, visible: visible, rounded: h.baseAddress!, fused: false)
      }
    }
    var worst = 0.0  // relative error over its bound
    for i in 0..<shape.rows {
      let own = shape.offset + i + 1
      let first = shape.window < own ? own - shape.window : 0
      let row = (first..<own).map { Double(scores[i * visible + $0]) }
      let top = row.max()!
      let total = row.reduce(0) { $0 + Foundation.exp($1 - top) }
      for j in 0..<visible {
        let at = i * visible + j
        let exact = j >= first && j < own ? Foundation.exp(Double(scores[at]) - top) / total : 0
        if exact == 0 {
          #expect(fused[at] == 0 && fusedHalves[at] == 0, "row \(i) key \(j) is masked")
        } else {
          // Float's s − max carries up to half an ulp of the larger: (|s| + |max|)·2⁻²⁴ of
          // relative error through exp, beside exp's 2 ulp and the scaling's rounding.
          let bound = 3e-7 + (abs(Double(scores[at])) + abs(top)) * 0x1p-24
          worst = max(worst, abs(Double(fused[at]) - exact) / exact / bound)
        }
        // The bf16 copy is the rounding of the fp32 probability written beside it.
        #expect(fusedHalves[at] == BFloat16.bits(fused[at]), "row \(i) key \(j)")
      }
    }
    #expect(worst <= 1, "worst relative error \(worst) of its bound")
    let apart = zip(fused, plain).map { abs($0 - $1) / max(abs($1), 1e-30) }.max()!
    #expect(apart < 1e-6, "fused and Swift passes \(apart) apart")
  }

  @Test(arguments: [1, 15, 16, 17, 255, 256, 257, 700])
  func softmaxGradientMatchesFloat64(_ visible: Int) {
    let g = Self.geometry((1, visible - 1, Int.max))
    var p = Self.scores(visible, seed: 3)
    p.withUnsafeMutableBufferPointer { g.softmax($0.baseAddress!, r0: 0, rows: 1, visible: visible) }
    let dp = (0..<visible).map { Float(cos(Double($0) * 0.29)) }
    let dot = zip(p, dp).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
    var fused = dp
    var plain = dp
    var halves = [UInt16](repeating: 0xFFFF, count: visible)
    p.withUnsafeMutableBufferPointer { pp in
      fused.withUnsafeMutableBufferPointer { d in
        halves.withUnsafeMutableBufferPointer { h in
          g.softmaxGradient(
            d.baseAddress!, p: pp.baseAddress!, rows: 1, visible: visible, rounded: h.baseAddress!,
            fused: true)
        }
      }
      plain.withUnsafeMutableBufferPointer { d in
        g.softmaxGradient(d.baseAddress!, p: pp.baseAddress!, rows: 1, visible: visible, fused: false)
      }
    }
    for j in 0..<visible {
      let exact = Double(p[j]) * (Double(dp[j]) - dot)
      #expect(abs(Double(fused[j]) - exact) <= 1e-6 * Double(p[j]) + 1e-12, "key \(j)")
      #expect(abs(fused[j] - plain[j]) <= 1e-6 * p[j] + 1e-12, "key \(j)")
      #expect(halves[j] == BFloat16.bits(fused[j]), "key \(j)")
    }
  }
}
