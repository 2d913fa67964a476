import Foundation
import Testing

@testable import LoRAKernels

/// Attention with bf16 products (`precision: .bf16`) against a float64 reference that rounds
/// what the kernel rounds (q, k, v, dOut, the probabilities and their gradient) and nothing
/// else. The kernel's fp32 accumulation and fp32 softmax then differ from it by summation
/// order, and by a bf16 rounding that falls the other way now and then (1e-7 to 1e-6 of each
/// output's largest value, 9e-4 where one dS entry rounds the other way); the same reference
/// without rounding is 3e-3 to 2e-2 away, so the test sees a missed or misplaced rounding as
/// well as a wrong block, head or span.
@Suite(.enabled(if: Attention.bf16Available, "oneDNN has no bf16 products on this CPU"))
struct BF16AttentionTests {
  let heads = 6
  let kvHeads = 2
  let headSize = 8
  /// Two rows of 70 (crossing the 64-row block).
  let length = 70

  struct Case: CustomTestStringConvertible, Sendable {
    var name: String
    var window: Int?
    var spans: [Attention.Span]?
    /// Keys before the queries (a prefix), for queryLength < keyLength.
    var offset = 0
    var testDescription: String { name }
  }

  static let cases = [
    Case(name: "whole rows"), Case(name: "sliding window", window: 6),
    Case(
      name: "packed",
      spans: [
        .init(row: 0, start: 0, count: 5), .init(row: 0, start: 5, count: 65),
        .init(row: 1, start: 0, count: 3),
        .init(row: 1, start: 3, count: 64), .init(row: 1, start: 67, count: 3),
      ]),
    Case(name: "prefix keys", offset: 5),
  ]

  struct Result {
    var out, dq, dk, dv: [Double]
  }

  /// Float64 attention over `c`'s sequences, rounding to bf16 where the kernel does when
  /// `rounding`.
  func reference(_ c: Case, q: Tensor, k: Tensor, v: Tensor, dOut: Tensor, rounding: Bool) -> Result {
    let r: (Double) -> Double = { rounding ? Double(BFloat16.rounded(Float($0))) : $0 }
    let (keys, group) = (c.offset + length, heads / kvHeads)
    let scale = 1 / Double(headSize).squareRoot()
    var result = Result(
      out: .init(repeating: 0, count: q.count), dq: .init(repeating: 0, count: q.count),
      dk: .init(repeating: 0, count: k.count), dv: .init(repeating: 0, count: v.count))
    let units = c.spans ?? (0..<2).map { Attention.Span(row: $0, start: 0, count: length) }
    func qi(_ b: Int, _ t: Int, _ h: Int, _ d: Int) -> Int { ((b * length + t) * heads + h) * headSize + d }
    func ki(_ b: Int, _ t: Int, _ h: Int, _ d: Int) -> Int {
      ((b * keys + t) * kvHeads + h / group) * headSize + d
    }
    for unit in units {
      let (b, s0) = (unit.row, unit.start)
      for h in 0..<heads {
        for i in 0..<unit.count {
          let position = c.offset + i
          let first = c.window.map { max(0, position - $0 + 1) } ?? 0
          let seen = Array(first...position)
          let scores = seen.map { j in
            scale
              * (0..<headSize).reduce(0.0) {
                $0 + r(Double(q[qi(b, s0 + i, h, $1)])) * r(Double(k[ki(b, s0 + j, h, $1)]))
              }
          }
          let top = scores.max()!
          let e = scores.map { Foundation.exp($0 - top) }
          let p = e.map { $0 / e.reduce(0, +) }
          let dp = seen.map { j in
            (0..<headSize).reduce(0.0) {
              $0 + r(Double(dOut[qi(b, s0 + i, h, $1)])) * r(Double(v[ki(b, s0 + j, h, $1)]))
            }
          }
          let dot = zip(p, dp).reduce(0.0) { $0 + $1.0 * $1.1 }
          for (n, j) in seen.enumerated() {
            let ds = r(p[n] * (dp[n] - dot))
            for d in 0..<headSize {
              result.out[qi(b, s0 + i, h, d)] += r(p[n]) * r(Double(v[ki(b, s0 + j, h, d)]))
              result.dv[ki(b, s0 + j, h, d)] += r(p[n]) * r(Double(dOut[qi(b, s0 + i, h, d)]))
              result.dq[qi(b, s0 + i, h, d)] += scale * ds * r(Double(k[ki(b, s0 + j, h, d)]))
              result.dk[ki(b, s0 + j, h, d)] += scale * ds * r(Double(q[qi(b, s0 + i, h, d)]))
            }
          }
        }
      }
    }
    return result
  }

  /// The kernel's forward and backward in `precision`.
  func kernel(_ c: Case, q: Tensor, k: Tensor, v: Tensor, dOut: Tensor, precision: Attention.Precision)
    -> Result
  {
    let keys = c.offset + length
    let scratch = Tensor(
      zeros: [
        Attention.scratchCount(queryLength: length, keyLength: keys, bf16: (headSize, heads / kvHeads))
      ])
    let out = Tensor(zeros: q.shape)
    Attention.forward(
      out, q: q, k: k, v: v, scratch: scratch, batch: 2, queryLength: length, keyLength: keys,
      keyStride: keys,
      heads: heads, kvHeads: kvHeads, headSize: headSize, window: c.window, spans: c.spans,
      precision: precision)
    let (dq, dk, dv) = (Tensor(zeros: q.shape), Tensor(zeros: k.shape), Tensor(zeros: v.shape))
    Attention.backward(
      dq: dq, dk: dk, dv: dv, dOut: dOut, q: q, k: k, v: v, scratch: scratch, batch: 2, queryLength: length,
      keyLength: keys, keyStride: keys, heads: heads, kvHeads: kvHeads, headSize: headSize, window: c.window,
      spans: c.spans, precision: precision)
    return Result(
      out: out.values.map(Double.init), dq: dq.values.map(Double.init), dk: dk.values.map(Double.init),
      dv: dv.values.map(Double.init))
  }

  /// The largest difference of each output, relative to that output's largest magnitude.
  func distances(_ a: Result, _ b: Result) -> [Double] {
    [(a.out, b.out), (a.dq, b.dq), (a.dk, b.dk), (a.dv, b.dv)].map { x, y in
      zip(x, y).map { abs($0 - $1) }.max()! / max(y.map(abs).max()!, 1e-30)
    }
  }

  @Test(arguments: cases)
  func bf16ProductsEqualTheRoundedReference(_ c: Case) {
    let keys = c.offset + length
    let q = randomTensor([2, length, heads, headSize], seed: 81)
    let k = randomTensor([2, keys, kvHeads, headSize], seed: 82)
    let v = randomTensor([2, keys, kvHeads, headSize], seed: 83)
    let dOut = randomTensor(q.shape, seed: 84)
    for t in [q, k] { for i in 0..<t.count { t[i] *= 3 } }  // peaked probabilities, not all near 1/n
    let bf16 = kernel(c, q: q, k: k, v: v, dOut: dOut, precision: .bf16)
    let rounded = reference(c, q: q, k: k, v: v, dOut: dOut, rounding: true)
    let exact = reference(c, q: q, k: k, v: v, dOut: dOut, rounding: false)
    let near = distances(bf16, rounded)
    let far = distances(bf16, exact)
    #expect(near.allSatisfy { $0 < 2e-3 }, "bf16 against the rounded reference: \(near)")
    #expect(zip(near, far).allSatisfy { 5 * $0 < $1 }, "rounded \(near), exact \(far)")
    // And the fp32 kernel is the exact reference's, to fp32 rounding.
    let fp32 = distances(kernel(c, q: q, k: k, v: v, dOut: dOut, precision: .f32), exact)
    #expect(fp32.allSatisfy { $0 < 1e-5 }, "fp32 against the exact reference: \(fp32)")
  }

  /// The bf16 path is deterministic and sees each sequence alone: packed rows give what
  /// each sequence gives in a batch of its own, bit for bit.
  @Test func packedEqualsEachSequenceAloneBitForBit() {
    let spans = Self.cases[2].spans!
    let q = randomTensor([2, length, heads, headSize], seed: 85)
    let k = randomTensor([2, length, kvHeads, headSize], seed: 86)
    let v = randomTensor([2, length, kvHeads, headSize], seed: 87)
    let packed = Tensor(zeros: q.shape)
    let scratch = Tensor(
      zeros: [
        Attention.scratchCount(queryLength: length, keyLength: length, bf16: (headSize, heads / kvHeads))
      ])
    Attention.forward(
      packed, q: q, k: k, v: v, scratch: scratch, batch: 2, queryLength: length, keyLength: length,
      keyStride: length, heads: heads, kvHeads: kvHeads, headSize: headSize, spans: spans, precision: .bf16)
    for span in spans {
      let n = span.count
      func slice(_ t: Tensor, _ h: Int) -> Tensor {
        t.view(offset: (span.row * length + span.start) * h * headSize, shape: [1, n, h, headSize]).clone()
      }
      let alone = Tensor(zeros: [1, n, heads, headSize])
      Attention.forward(
        alone, q: slice(q, heads), k: slice(k, kvHeads), v: slice(v, kvHeads), scratch: scratch, batch: 1,
        queryLength: n, keyLength: n, keyStride: n, heads: heads, kvHeads: kvHeads, headSize: headSize,
        precision: .bf16)
      #expect(slice(packed, heads).values == alone.values, "span \(span)")
    }
  }
}

/// The scratch holds a part per kernel thread, counted when it is made; a scratch of fewer
/// parts than threads runs attention on fewer threads, with the same result bit for bit.
@Suite struct AttentionScratchTests {
  @Test(arguments: Attention.Precision.allCases.filter { $0 == .f32 || Attention.bf16Available })
  func aScratchOfOnePartGivesTheSameResult(precision: Attention.Precision) {
    let (heads, kvHeads, headSize, length) = (6, 2, 8, 70)
    let bf16 = precision == .bf16 ? (headSize, heads / kvHeads) : nil
    let q = randomTensor([2, length, heads, headSize], seed: 91)
    let k = randomTensor([2, length, kvHeads, headSize], seed: 92)
    let v = randomTensor([2, length, kvHeads, headSize], seed: 93)
    let dOut = randomTensor(q.shape, seed: 94)
    let parts = [
      Attention.scratchCount(queryLength: length, keyLength: length, bf16: bf16) * 2,
      Attention.partScratch(queryLength: length, keyLength: length, bf16: bf16),
    ]
    let results = parts.map { count in
      let scratch = Tensor(zeros: [count])
      let out = Tensor(zeros: q.shape)
      Attention.forward(
        out, q: q, k: k, v: v, scratch: scratch, batch: 2, queryLength: length, keyLength: length,
        keyStride: length, heads: heads, kvHeads: kvHeads, headSize: headSize, precision: precision)
      let (dq, dk, dv) = (Tensor(zeros: q.shape), Tensor(zeros: k.shape), Tensor(zeros: v.shape))
      Attention.backward(
        dq: dq, dk: dk, dv: dv, dOut: dOut, q: q, k: k, v: v, scratch: scratch, batch: 2,
        queryLength: length, keyLength: length, keyStride: length, heads: heads, kvHeads: kvHeads,
        headSize: headSize, precision: precision)
      return [out, dq, dk, dv].map(\.values)
    }
    #expect(results[0] == results[1])
  }

  /// A pass with no rows (an empty batch) has nothing to compute and needs no scratch.
  @Test(arguments: Attention.Precision.allCases.filter { $0 == .f32 || Attention.bf16Available })
  func anEmptyBatchNeedsNoScratch(precision: Attention.Precision) {
    let empty = Tensor(zeros: [0, 4, 2, 8])
    Attention.forward(
      empty, q: empty, k: empty, v: empty, scratch: Tensor(zeros: [0]), batch: 0, queryLength: 4,
      keyLength: 4, keyStride: 4, heads: 2, kvHeads: 2, headSize: 8, precision: precision)
    Attention.backward(
      dq: empty, dk: empty, dv: empty, dOut: empty, q: empty, k: empty, v: empty, scratch: Tensor(zeros: [0]),
      batch: 0, queryLength: 4, keyLength: 4, keyStride: 4, heads: 2, kvHeads: 2, headSize: 8,
      precision: precision)
    #expect(empty.count == 0)
  }
}
