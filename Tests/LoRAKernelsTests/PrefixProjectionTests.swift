import Foundation
import Testing

@testable import LoRAKernels

/// Prefix tuning's projection MLP: every gradient against finite differences of its forward.
@Suite struct PrefixProjectionTests {
  @Test func everyGradientMatchesFiniteDifferences() {
    let (n, e, h, w) = (3, 5, 4, 7)
    let embedding = randomTensor([n, e], seed: 61)
    let w1 = randomTensor([h, e], seed: 62)
    let b1 = randomTensor([h], seed: 63)
    let w2 = randomTensor([w, h], seed: 64)
    let b2 = randomTensor([w], seed: 65)
    let upstream = randomTensor([n, w], seed: 66)
    let (table, hidden) = (Tensor(zeros: [n, w]), Tensor(zeros: [n, h]))
    func loss() -> Double {
      PrefixProjection.forward(table: table, hidden: hidden, e: embedding, w1: w1, b1: b1, w2: w2, b2: b2)
      return weightedSum(table, upstream)
    }
    _ = loss()
    let grads = [embedding, w1, b1, w2, b2].map { Tensor(zeros: $0.shape) }
    PrefixProjection.backward(
      dTable: upstream, hidden: hidden, e: embedding, w1: w1, w2: w2, gE: grads[0], gW1: grads[1],
      gB1: grads[2],
      gW2: grads[3], gB2: grads[4], dPre: Tensor(zeros: [n, h]))
    for (input, gradient) in zip([embedding, w1, b1, w2, b2], grads) {
      let error = finiteDifferenceError(input: input, analytic: gradient, loss: loss)
      #expect(error < 1e-2, "relative error \(error) for a tensor of shape \(input.shape)")
    }
  }
}
