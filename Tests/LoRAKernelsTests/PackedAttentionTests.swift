import Foundation
import Testing

@testable import LoRAKernels

/// Packed rows (`Attention.Span`): each span is attention over a sequence of its own, so a
/// packed batch gives, bit for bit, what each sequence gives alone; and its backward
/// matches finite differences.
@Suite struct PackedAttentionTests {
  let heads = 4
  let kvHeads = 2
  let headSize = 4
  /// Two rows of 70 (crossing the 64-row block): row 0 holds 5, 65; row 1 holds 3, 4, 60, 3.
  let length = 70
  let spans = [
    Attention.Span(row: 0, start: 0, count: 5), Attention.Span(row: 0, start: 5, count: 65),
    Attention.Span(row: 1, start: 0, count: 3), Attention.Span(row: 1, start: 3, count: 4),
    Attention.Span(row: 1, start: 7, count: 60), Attention.Span(row: 1, start: 67, count: 3),
  ]

  /// Rows [start, start + count) of row `row` of t ([B, T, heads, HS]) as a tensor of one sequence.
  func slice(_ t: Tensor, _ span: Attention.Span, width: Int) -> Tensor {
    t.view(
      offset: (span.row * length + span.start) * width, shape: [1, span.count, width / headSize, headSize]
    )
    .clone()
  }

  @Test(arguments: [nil, 6] as [Int?])
  func packedEqualsEachSequenceAlone(window: Int?) {
    let (qw, kw) = (heads * headSize, kvHeads * headSize)
    let q = randomTensor([2, length, heads, headSize], seed: 71)
    let k = randomTensor([2, length, kvHeads, headSize], seed: 72)
    let v = randomTensor([2, length, kvHeads, headSize], seed: 73)
    let dOut = randomTensor(q.shape, seed: 74)
    let scratch = Tensor(zeros: [Attention.scratchCount(queryLength: length, keyLength: length)])
    let out = Tensor(zeros: q.shape)
    Attention.forward(
      out, q: q, k: k, v: v, scratch: scratch, batch: 2, queryLength: length, keyLength: length,
      keyStride: length, heads: heads, kvHeads: kvHeads, headSize: headSize, window: window, spans: spans)
    let (dq, dk, dv) = (Tensor(zeros: q.shape), Tensor(zeros: k.shape), Tensor(zeros: v.shape))
    Attention.backward(
      dq: dq, dk: dk, dv: dv, dOut: dOut, q: q, k: k, v: v, scratch: scratch, batch: 2, queryLength: length,
      keyLength: length, keyStride: length, heads: heads, kvHeads: kvHeads, headSize: headSize,
      window: window,
      spans: spans)
    for span in spans {
      let n = span.count
      let (sq, sk, sv) = (slice(q, span, width: qw), slice(k, span, width: kw), slice(v, span, width: kw))
      let alone = Tensor(zeros: sq.shape)
      Attention.forward(
        alone, q: sq, k: sk, v: sv, scratch: scratch, batch: 1, queryLength: n, keyLength: n, keyStride: n,
        heads: heads, kvHeads: kvHeads, headSize: headSize, window: window)
      #expect(slice(out, span, width: qw).values == alone.values)
      let (aq, ak, av) = (Tensor(zeros: sq.shape), Tensor(zeros: sk.shape), Tensor(zeros: sv.shape))
      Attention.backward(
        dq: aq, dk: ak, dv: av, dOut: slice(dOut, span, width: qw), q: sq, k: sk, v: sv, scratch: scratch,
        batch: 1, queryLength: n, keyLength: n, keyStride: n, heads: heads, kvHeads: kvHeads,
        headSize: headSize, window: window)
      #expect(slice(dq, span, width: qw).values == aq.values)
      #expect(slice(dk, span, width: kw).values == ak.values)
      #expect(slice(dv, span, width: kw).values == av.values)
    }
    // Without spans the rows are one sequence each: the later spans' outputs differ.
    let whole = Tensor(zeros: q.shape)
    Attention.forward(
      whole, q: q, k: k, v: v, scratch: scratch, batch: 2, queryLength: length, keyLength: length,
      keyStride: length, heads: heads, kvHeads: kvHeads, headSize: headSize, window: window)
    #expect(slice(whole, spans[1], width: qw).values != slice(out, spans[1], width: qw).values)
  }

  @Test func packedBackwardMatchesFiniteDifferences() {
    let length = 12
    let spans = [
      Attention.Span(row: 0, start: 0, count: 5), Attention.Span(row: 0, start: 5, count: 7),
      Attention.Span(row: 1, start: 0, count: 3), Attention.Span(row: 1, start: 3, count: 9),
    ]
    let q = randomTensor([2, length, heads, headSize], seed: 81)
    let k = randomTensor([2, length, kvHeads, headSize], seed: 82)
    let v = randomTensor([2, length, kvHeads, headSize], seed: 83)
    let upstream = randomTensor(q.shape, seed: 84)
    let out = Tensor(zeros: q.shape)
    let scratch = Tensor(zeros: [Attention.scratchCount(queryLength: length, keyLength: length)])
    func loss() -> Double {
      Attention.forward(
        out, q: q, k: k, v: v, scratch: scratch, batch: 2, queryLength: length, keyLength: length,
        keyStride: length, heads: heads, kvHeads: kvHeads, headSize: headSize, spans: spans)
      return weightedSum(out, upstream)
    }
    _ = loss()
    let (dq, dk, dv) = (Tensor(zeros: q.shape), Tensor(zeros: k.shape), Tensor(zeros: v.shape))
    Attention.backward(
      dq: dq, dk: dk, dv: dv, dOut: upstream, q: q, k: k, v: v, scratch: scratch, batch: 2,
      queryLength: length, keyLength: length, keyStride: length, heads: heads, kvHeads: kvHeads,
      headSize: headSize, spans: spans)
    for (input, analytic) in [(q, dq), (k, dk), (v, dv)] {
      #expect(finiteDifferenceError(input: input, analytic: analytic, loss: loss) < 1e-2)
    }
  }

  @Test func packedDropoutDrawsEachSequencesOwnMask() {
    // Sequences of 3 and 5 rows packed in one row of 8, against each alone (padded to 8).
    let x = randomTensor([8, 6], seed: 91)
    let packed = Tensor(zeros: x.shape)
    Dropout.apply(packed, x, probability: 0.5, sequences: [0..<3, 3..<8]) { UInt64(100 + $0) }
    for (s, rows) in [0..<3, 3..<8].enumerated() {
      let alone = x.view(offset: rows.lowerBound * 6, shape: [rows.count, 6]).clone()
      let padded = Tensor(zeros: [8, 6])
      padded.view(offset: 0, shape: alone.shape).copy(from: alone)
      let masked = Tensor(zeros: padded.shape)
      Dropout.apply(masked, padded, probability: 0.5, rowsPerSequence: 8) { _ in UInt64(100 + s) }
      #expect(
        packed.view(offset: rows.lowerBound * 6, shape: alone.shape).values
          == masked.view(offset: 0, shape: alone.shape).values)
    }
  }
}
