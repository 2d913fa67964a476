import Foundation
import Testing

@testable import LoRAKernels

/// Every kernel's backward against finite differences of its forward.
@Suite struct BackwardTests {
  @Test func rmsNorm() {
    let (n, d) = (3, 8)
    let x = randomTensor([n, d], seed: 11)
    let w = randomTensor([d], seed: 12)
    let upstream = randomTensor([n, d], seed: 13)
    let y = Tensor(zeros: [n, d])
    let r = Tensor(zeros: [n])
    func loss() -> Double {
      RMSNorm.forward(y, reciprocalRMS: r, x, weight: w, eps: 1e-5)
      return weightedSum(y, upstream)
    }
    _ = loss()
    let dx = Tensor(zeros: [n, d])
    RMSNorm.backward(dx, upstream, x, reciprocalRMS: r, weight: w)
    #expect(finiteDifferenceError(input: x, analytic: dx, loss: loss) < 1e-2)
    _ = loss()  // y again at the unperturbed x
    let again = Tensor(zeros: [n, d])
    RMSNorm.recompute(again, x, reciprocalRMS: r, weight: w)
    #expect(again.values == y.values)
  }

  @Test func swiGLU() {
    let gate = randomTensor([4, 6], seed: 21)
    let up = randomTensor([4, 6], seed: 22)
    let upstream = randomTensor([4, 6], seed: 23)
    let out = Tensor(zeros: [4, 6])
    func loss() -> Double {
      SwiGLU.forward(out, gate: gate, up: up)
      return weightedSum(out, upstream)
    }
    let dgate = Tensor(zeros: [4, 6])
    let dup = Tensor(zeros: [4, 6])
    SwiGLU.backward(dgate: dgate, dup: dup, dout: upstream, gate: gate, up: up)
    #expect(finiteDifferenceError(input: gate, analytic: dgate, loss: loss) < 1e-2)
    #expect(finiteDifferenceError(input: up, analytic: dup, loss: loss) < 1e-2)
  }

  @Test func rope() {
    let table = RoPETable(
      headSize: 8, maxPositions: 16,
      inverseFrequencies: RoPETable.inverseFrequencies(headSize: 8, theta: 10_000))
    let positions = [0, 3, 7, 15]
    let x = randomTensor([4, 2, 8], seed: 31)
    let upstream = randomTensor([4, 2, 8], seed: 32)
    func loss() -> Double {
      let y = x.clone()
      table.forward(y, heads: 2, positions: positions)
      return weightedSum(y, upstream)
    }
    let dx = upstream.clone()
    table.backward(dx, heads: 2, positions: positions)
    #expect(finiteDifferenceError(input: x, analytic: dx, loss: loss) < 1e-2)
  }

  @Test(
    arguments: [(5, 5, nil), (3, 7, nil), (70, 70, nil), (6, 6, 2), (3, 7, 3), (70, 70, 9)]
      as [(Int, Int, Int?)])
  func attention(queryLength: Int, keyLength: Int, window: Int?) {
    // Two sequences, 4 query heads over 2 kv heads; (70, 70) crosses the 64-row block edge.
    let (batch, heads, kvHeads, headSize) = (2, 4, 2, 4)
    let q = randomTensor([batch, queryLength, heads, headSize], seed: 41)
    let k = randomTensor([batch, keyLength, kvHeads, headSize], seed: 42)
    let v = randomTensor([batch, keyLength, kvHeads, headSize], seed: 43)
    let upstream = randomTensor([batch, queryLength, heads, headSize], seed: 44)
    let out = Tensor(zeros: q.shape)
    let scratch = Tensor(zeros: [Attention.scratchCount(queryLength: queryLength, keyLength: keyLength)])
    func loss() -> Double {
      Attention.forward(
        out, q: q, k: k, v: v, scratch: scratch, batch: batch, queryLength: queryLength, keyLength: keyLength,
        keyStride: keyLength, heads: heads, kvHeads: kvHeads, headSize: headSize, window: window)
      return weightedSum(out, upstream)
    }
    _ = loss()
    let dq = Tensor(zeros: q.shape)
    let dk = Tensor(zeros: k.shape)
    let dv = Tensor(zeros: v.shape)
    Attention.backward(
      dq: dq, dk: dk, dv: dv, dOut: upstream, q: q, k: k, v: v, scratch: scratch, batch: batch,
      queryLength: queryLength, keyLength: keyLength, keyStride: keyLength, heads: heads, kvHeads: kvHeads,
      headSize: headSize, window: window)
    let sampled = queryLength > 10  // the big case: check a slice of elements to stay fast
    for (input, analytic) in [(q, dq), (k, dk), (v, dv)] {
      if sampled {
        let view = input.view(offset: 0, shape: [64])
        let grad = analytic.view(offset: 0, shape: [64])
        #expect(finiteDifferenceError(input: view, analytic: grad, loss: loss) < 1e-2)
      } else {
        #expect(finiteDifferenceError(input: input, analytic: analytic, loss: loss) < 1e-2)
      }
    }
  }

  @Test(arguments: [nil, 1, 3] as [Int?])
  func attentionMatchesDenseSoftmax(window: Int?) {
    // One sequence, one head: compare with softmax(q·kᵀ/√d + causal (and window) mask)·v
    // written out.
    let (t, d) = (6, 4)
    let q = randomTensor([1, t, 1, d], seed: 51)
    let k = randomTensor([1, t, 1, d], seed: 52)
    let v = randomTensor([1, t, 1, d], seed: 53)
    let out = Tensor(zeros: q.shape)
    Attention.forward(
      out, q: q, k: k, v: v, scratch: Tensor(zeros: [Attention.scratchCount(queryLength: t, keyLength: t)]),
      batch: 1, queryLength: t, keyLength: t, keyStride: t, heads: 1, kvHeads: 1, headSize: d, window: window)
    for i in 0..<t {
      let keys = max(0, i - (window ?? t) + 1)...i
      var scores = keys.map { j in (0..<d).reduce(0.0) { $0 + Double(q[i * d + $1] * k[j * d + $1]) } / 2 }
      let m = scores.max()!
      scores = scores.map { Foundation.exp($0 - m) }
      let total = scores.reduce(0, +)
      for c in 0..<d {
        let expected = zip(keys, scores).reduce(0.0) { $0 + $1.1 / total * Double(v[$1.0 * d + c]) }
        #expect(abs(Double(out[i * d + c]) - expected) < 1e-5)
      }
    }
  }

  @Test func lowRank() {
    let (n, input, output, rank) = (5, 6, 7, 3)
    let x = randomTensor([n, input], seed: 61)
    let a = randomTensor([rank, input], seed: 62)
    let b = randomTensor([output, rank], seed: 63)
    let base = randomTensor([n, output], seed: 64)
    let upstream = randomTensor([n, output], seed: 65)
    let u = Tensor(zeros: [n, rank])
    func loss() -> Double {
      let y = base.clone()
      LowRank.forward(y, u: u, x: x, a: a, b: b, scale: 1.5)
      return weightedSum(y, upstream)
    }
    _ = loss()
    let dx = Tensor(zeros: [n, input])
    let gA = Tensor(zeros: a.shape)
    let gB = Tensor(zeros: b.shape)
    LowRank.backward(
      dx: dx, gA: gA, gB: gB, dy: upstream, x: x, u: u, a: a, b: b, scale: 1.5, du: Tensor(zeros: [n, rank]))
    #expect(finiteDifferenceError(input: x, analytic: dx, loss: loss) < 1e-2)
    #expect(finiteDifferenceError(input: a, analytic: gA, loss: loss) < 1e-2)
    #expect(finiteDifferenceError(input: b, analytic: gB, loss: loss) < 1e-2)
  }

  /// A frozen update's input gradient: the same dx as the trained one, by finite differences.
  @Test func lowRankInputGradientOfAFrozenUpdate() {
    let (n, input, output, rank) = (4, 6, 5, 3)
    let x = randomTensor([n, input], seed: 66)
    let a = randomTensor([rank, input], seed: 67)
    let b = randomTensor([output, rank], seed: 68)
    let upstream = randomTensor([n, output], seed: 69)
    func loss() -> Double {
      let y = Tensor(zeros: [n, output])
      LowRank.forward(y, u: Tensor(zeros: [n, rank]), x: x, a: a, b: b, scale: 0.75)
      return weightedSum(y, upstream)
    }
    let dx = randomTensor([n, input], seed: 70)
    let before = dx.clone()
    LowRank.inputGradient(dx: dx, dy: upstream, a: a, b: b, scale: 0.75, du: Tensor(zeros: [n, rank]))
    let added = Tensor(zeros: dx.shape)
    for i in 0..<dx.count { added[i] = dx[i] - before[i] }
    #expect(finiteDifferenceError(input: x, analytic: added, loss: loss) < 1e-2)
  }

  @Test func mergeThenUnmergeRestoresTheWeight() {
    let w = randomTensor([7, 6], seed: 71)
    let original = w.values
    let a = randomTensor([3, 6], seed: 72)
    let b = randomTensor([7, 3], seed: 73)
    // Merged weight gives the same output as the unmerged update.
    let x = randomTensor([2, 6], seed: 74)
    let unmerged = Tensor(zeros: [2, 7])
    GEMM.multiply(into: unmerged, x, w, transposeB: .transposed)
    LowRank.forward(unmerged, u: Tensor(zeros: [2, 3]), x: x, a: a, b: b, scale: 2)
    LowRank.merge(into: w, a: a, b: b, scale: 2)
    let merged = Tensor(zeros: [2, 7])
    GEMM.multiply(into: merged, x, w, transposeB: .transposed)
    for (p, q) in zip(merged.values, unmerged.values) { #expect(abs(p - q) < 1e-5) }
    LowRank.merge(into: w, a: a, b: b, scale: 2, sign: -1)
    for (p, q) in zip(w.values, original) { #expect(abs(p - q) < 1e-6) }
  }

  @Test func outputLoss() {
    let (n, d, vocabulary) = (5, 4, 9)
    let hidden = randomTensor([n, d], seed: 81)
    let head = randomTensor([vocabulary, d], seed: 82)
    let targets: [Int32] = [3, -1, 0, 8, -1]
    let scratch = Tensor(zeros: [OutputLoss.scratchCount(chunkRows: 2, width: d, vocabulary: vocabulary)])
    func loss() -> Double {
      OutputLoss.forwardBackward(
        dHidden: nil, hidden: hidden, head: head, targets: targets, gradientScale: 1, scratch: scratch,
        chunkRows: 2
      ).lossSum
    }
    let dHidden = Tensor(zeros: [n, d])
    let (sum, count) = OutputLoss.forwardBackward(
      dHidden: dHidden, hidden: hidden, head: head, targets: targets, gradientScale: 1, scratch: scratch,
      chunkRows: 2)
    #expect(count == 3)
    // The loss equals a direct log-softmax.
    var direct = 0.0
    for (row, target) in targets.enumerated() where target >= 0 {
      let logits = (0..<vocabulary).map { j in
        (0..<d).reduce(0.0) { $0 + Double(hidden[row * d + $1] * head[j * d + $1]) }
      }
      let m = logits.max()!
      direct += m + Foundation.log(logits.reduce(0.0) { $0 + Foundation.exp($1 - m) }) - logits[Int(target)]
    }
    #expect(abs(sum - direct) < 1e-5)
    #expect(finiteDifferenceError(input: hidden, analytic: dHidden, loss: loss) < 1e-2)
    for i in 0..<d { #expect(dHidden[1 * d + i] == 0 && dHidden[4 * d + i] == 0) }
  }
}
