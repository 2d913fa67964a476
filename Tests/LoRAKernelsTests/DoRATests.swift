import Testing

@testable import LoRAKernels

/// DoRA's kernels: the row norms against a direct sum, and `backward` against finite
/// differences of `combine` with the norms held constant (PEFT's definition).
@Suite struct DoRATests {
  @Test func rowNormsAreThoseOfW0PlusTheScaledProduct() {
    // 70 rows: more than one block of DoRA.blockRows.
    let (out, input, rank) = (70, 9, 3)
    let w = randomTensor([out, input], seed: 201)
    let a = randomTensor([rank, input], seed: 202)
    let b = randomTensor([out, rank], seed: 203)
    let norms = Tensor(zeros: [out])
    DoRA.rowNorms(
      into: norms, weight: .f32(w), a: a, b: b, scale: 1.5,
      scratch: Tensor(zeros: [DoRA.scratchCount(inFeatures: input)]))
    for j in 0..<out {
      var sum = 0.0
      for i in 0..<input {
        var value = Double(w[j * input + i])
        for r in 0..<rank { value += 1.5 * Double(b[j * rank + r]) * Double(a[r * input + i]) }
        sum += value * value
      }
      #expect(abs(Double(norms[j]) - sum.squareRoot()) <= 1e-5 * sum.squareRoot(), "row \(j)")
    }
  }

  @Test func backwardMatchesFiniteDifferencesOfCombine() {
    let (n, out) = (5, 7)
    let z = randomTensor([n, out], seed: 211)
    let residual = randomTensor([n, out], seed: 212)
    let magnitude = randomTensor([out], seed: 213)
    let norms = Tensor(shape: [out], values: (0..<out).map { 0.5 + Float($0) / 4 })
    let upstream = randomTensor([n, out], seed: 214)
    func loss() -> Double {
      let y = Tensor(zeros: [n, out])
      DoRA.combine(y, residual: residual, z: z, magnitude: magnitude, norms: norms)
      return weightedSum(y, upstream)
    }
    let gm = randomTensor([out], seed: 215)
    let before = gm.clone()
    let dz = upstream.clone()
    DoRA.backward(dy: dz, z: z, magnitude: magnitude, norms: norms, gradMagnitude: gm)
    let added = Tensor(zeros: [out])
    for j in 0..<out { added[j] = gm[j] - before[j] }
    #expect(finiteDifferenceError(input: magnitude, analytic: added, loss: loss) < 1e-2)
    #expect(finiteDifferenceError(input: z, analytic: dz, loss: loss) < 1e-2)
    // The residual passes through: combine without one adds nothing else.
    let alone = Tensor(zeros: [n, out])
    DoRA.combine(alone, residual: nil, z: z, magnitude: magnitude, norms: norms)
    let with = Tensor(zeros: [n, out])
    DoRA.combine(with, residual: residual, z: z, magnitude: magnitude, norms: norms)
    for i in 0..<(n * out) { #expect(abs(with[i] - residual[i] - alone[i]) < 1e-5) }
  }
}
