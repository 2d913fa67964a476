import Foundation
import Testing

@testable import LoRAKernels

/// The frozen products of a bf16 matrix on both routes against fp32 products of the same
/// (bf16-valued) weights, their finite-difference check, and the bf16 storage carved from an
/// fp32 allocation.
@Suite(.serialized) struct FrozenMatrixTests {
  /// Runs `body` with this test's bf16 products on `route` (other tests keep theirs).
  func on(_ route: BF16Products.Route, _ body: () throws -> Void) rethrows {
    try BF16Products.withRoute(route) {
      #expect(BF16Products.route == route)
      try body()
    }
  }

  /// A weight whose values are exactly bf16 (so fp32 and bf16 storage hold the same numbers),
  /// as an fp32 and a bf16 frozen matrix; the bf16 one lives in a carved fp32 allocation at
  /// an offset, as a loaded base's do.
  func pair(_ shape: [Int], seed: UInt64) throws -> (f32: FrozenMatrix, bf16: FrozenMatrix) {
    let w = randomTensor(shape, seed: seed)
    BFloat16.round(w)
    let storage = Tensor(zeros: [16 + BF16Tensor.floatSlots(w.count)])
    let carved = BF16Tensor(carving: storage, offset: 16, shape: shape)
    try carved.store(w, name: "w")
    return (.f32(w), .bf16(carved))
  }

  /// The widened route multiplies in blocks of rows (`blockRows`), so shapes with more rows
  /// than one block, and a last partial block, are in the list; both products, beta 0 and 1.
  @Test(arguments: [
    (5, 7, 3), (64, 1536, 576), (64, 576, 1536), (9, 600, 1000), (2, 5000, 130),
  ])
  func widenedRouteEqualsFP32(m: Int, out: Int, input: Int) throws {
    let (f32, bf16) = try pair([out, input], seed: UInt64(out + input))
    let x = randomTensor([m, input], seed: 3)
    let dy = randomTensor([m, out], seed: 4)
    try on(.widened) {
      for beta: Float in [0, 1] {
        let (y, yRef) = (randomTensor([m, out], seed: 5), randomTensor([m, out], seed: 5))
        bf16.forward(into: y, x, beta: beta)
        f32.forward(into: yRef, x, beta: beta)
        let (dx, dxRef) = (randomTensor([m, input], seed: 6), randomTensor([m, input], seed: 6))
        bf16.inputGradient(into: dx, dy, beta: beta)
        f32.inputGradient(into: dxRef, dy, beta: beta)
        // Same values, only the blocking of the sums differs.
        #expect(maxDifference(y, yRef) < 1e-4 * scale(yRef))
        #expect(maxDifference(dx, dxRef) < 1e-4 * scale(dxRef))
      }
    }
  }

  @Test(.enabled(if: BF16MatMul.available), arguments: [(5, 7, 3), (64, 1536, 576), (9, 600, 1000)])
  func oneDNNRouteIsWithinBF16Rounding(m: Int, out: Int, input: Int) throws {
    let (f32, bf16) = try pair([out, input], seed: 11)
    let x = randomTensor([m, input], seed: 12)
    let (y, yRef) = (Tensor(zeros: [m, out]), Tensor(zeros: [m, out]))
    try on(.oneDNN) { bf16.forward(into: y, x) }
    f32.forward(into: yRef, x)
    // Only x is rounded (2⁻⁸ relative per term).
    #expect(maxDifference(y, yRef) < 1e-2 * scale(yRef))
    #expect(maxDifference(y, yRef) > 0)
  }

  /// d/dx Σ r·(x·Wᵀ) = r·W: the input gradient is the forward product's transpose.
  @Test func inputGradientMatchesFiniteDifferences() throws {
    let (_, bf16) = try pair([13, 21], seed: 21)
    let x = randomTensor([3, 21], seed: 22)
    let r = randomTensor([3, 13], seed: 23)
    let y = Tensor(zeros: [3, 13])
    let dx = Tensor(zeros: [3, 21])
    try on(.widened) {
      bf16.inputGradient(into: dx, r)
      let error = finiteDifferenceError(input: x, analytic: dx) {
        bf16.forward(into: y, x)
        return weightedSum(y, r)
      }
      #expect(error < 1e-3)
    }
  }

  @Test func storageRefusesValuesBeyondBF16AndNamesTheTensor() throws {
    let w = Tensor(shape: [2, 2], values: [1, 2, 3.4e38, 4])
    let carved = BF16Tensor(carving: Tensor(zeros: [2]), offset: 0, shape: [2, 2])
    #expect(throws: BF16Error.notRepresentable(tensor: "blk.0.ffn_up.weight", index: 2, value: 3.4e38)) {
      try carved.store(w, name: "blk.0.ffn_up.weight")
    }
    #expect(carved.widened().values == [0, 0, 0, 0])  // nothing written
    let (f32, bf16) = try pair([3, 4], seed: 31)
    #expect(bf16.widened().values == f32.widened().values)
    #expect(bf16.bytes * 2 == f32.bytes)
    let rows = Tensor(zeros: [2, 4])
    bf16.copyRows(1..<3, into: rows)
    #expect(rows.values == Array(f32.widened().values[4..<12]))
  }

  /// Decoding rows through the row-invariant products: a bf16 weight gives exactly the fp32
  /// path's bits for the same values, whatever the number of rows.
  @Test(arguments: [1, 4])
  func rowInvariantProductsAgreeBitwise(blockRows: Int) throws {
    let (f32, bf16) = try pair([700, 96], seed: 41)
    let products = RowInvariantGEMM(blockRows: blockRows, maxInput: 96)
    let x = randomTensor([6, 96], seed: 42)
    let (y, yRef) = (Tensor(zeros: [6, 700]), Tensor(zeros: [6, 700]))
    products.multiply(into: y, x, bf16)
    products.multiply(into: yRef, x, f32)
    #expect(y.values == yRef.values)
  }

  func maxDifference(_ a: Tensor, _ b: Tensor) -> Float {
    zip(a.values, b.values).reduce(0) { max($0, abs($1.0 - $1.1)) }
  }

  func scale(_ t: Tensor) -> Float { t.values.reduce(0) { max($0, abs($1)) } }
}
