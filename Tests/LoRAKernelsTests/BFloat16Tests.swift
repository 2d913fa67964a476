import Testing

@testable import LoRAKernels

@Suite struct BFloat16Tests {
  /// Every one of the 65 536 bf16 values widens to a Float and converts back to itself
  /// (NaNs to a quiet NaN of the same sign).
  @Test func everyValueRoundTrips() {
    var mismatches = 0
    for bits in 0...UInt16.max {
      let value = BFloat16.float(bits)
      let back = BFloat16.bits(value)
      if value.isNaN {
        if !BFloat16.float(back).isNaN || back & 0x8000 != bits & 0x8000 { mismatches += 1 }
      } else if back != bits {
        mismatches += 1
      }
    }
    #expect(mismatches == 0)
  }

  /// Round to nearest, ties to even, at 1 (bf16 ulp 2⁻⁷) and in the subnormals.
  @Test(arguments: [
    (UInt32(0x3F80_0000), UInt16(0x3F80)),  // 1 exactly
    (0x3F80_7FFF, 0x3F80),  // just below the midpoint 1 + 2⁻⁸: down
    (0x3F80_8000, 0x3F80),  // the midpoint, even neighbour 1: down
    (0x3F80_8001, 0x3F81),  // just above: up
    (0x3F81_8000, 0x3F82),  // the midpoint above an odd value: up to even
    (0xBF81_8000, 0xBF82),  // the same, negative
    (0xBF80_8000, 0xBF80),
    (0x3FFF_FFFF, 0x4000),  // carry into the next binade
    (0x0000_0001, 0x0000),  // the least Float subnormal rounds to +0
    (0x0000_8000, 0x0000),  // a subnormal tie rounds to even (0)
    (0x0001_8000, 0x0002),  // a subnormal tie above an odd value rounds up
    (0x8000_0000, 0x8000),  // -0 keeps its sign
  ])
  func roundsToNearestEven(input: UInt32, expected: UInt16) {
    #expect(BFloat16.bits(Float(bitPattern: input)) == expected)
  }

  @Test func nanAndInfinityStayWhatTheyAre() {
    #expect(BFloat16.float(BFloat16.bits(.nan)).isNaN)
    #expect(BFloat16.float(BFloat16.bits(-.nan)).isNaN)
    #expect(BFloat16.bits(-.nan) & 0x8000 != 0)
    // A signalling NaN whose payload lies only in the dropped bits: plain truncation or
    // rounding would make it infinity.
    #expect(BFloat16.float(BFloat16.bits(Float(bitPattern: 0x7F80_0001))).isNaN)
    #expect(BFloat16.float(BFloat16.bits(Float(bitPattern: 0xFF80_FFFF))).isNaN)
    #expect(BFloat16.bits(.infinity) == 0x7F80)
    #expect(BFloat16.bits(-.infinity) == 0xFF80)
  }

  @Test func valuesNearTheLargestFinite() {
    let largest = BFloat16.greatestFiniteMagnitude
    #expect(largest == Float(bitPattern: 0x7F7F_0000))
    #expect(BFloat16.rounded(largest) == largest)
    #expect(BFloat16.rounded(-largest) == -largest)
    // Below the midpoint to 2¹²⁸ the value rounds down to the largest finite bf16; from the
    // midpoint on (ties go to the even neighbour, infinity) it overflows.
    #expect(BFloat16.rounded(Float(bitPattern: 0x7F7F_7FFF)) == largest)
    #expect(BFloat16.isRepresentable(Float(bitPattern: 0x7F7F_7FFF)))
    #expect(BFloat16.rounded(Float(bitPattern: 0x7F7F_8000)) == .infinity)
    #expect(!BFloat16.isRepresentable(Float(bitPattern: 0x7F7F_8000)))
    #expect(!BFloat16.isRepresentable(-Float.greatestFiniteMagnitude))
    #expect(!BFloat16.isRepresentable(.infinity))
    #expect(!BFloat16.isRepresentable(.nan))
    #expect(BFloat16.isRepresentable(0) && BFloat16.isRepresentable(-1e38))
  }

  /// Rounding changes a value by at most 2⁻⁸ of its magnitude (half an ulp of 8 significant bits).
  @Test func roundingErrorIsBounded() {
    let values = randomTensor([10_000], seed: 71)
    var worst: Float = 0
    for i in 0..<values.count where values[i] != 0 {
      worst = max(worst, abs(BFloat16.rounded(values[i]) - values[i]) / abs(values[i]))
    }
    #expect(worst > 0 && worst <= 1 / 256)
  }

  @Test func buffersConvertAsSingleValuesDo() throws {
    let source = randomTensor([5, 1001], seed: 72)
    for i in stride(from: 0, to: source.count, by: 97) { source[i] *= 1e30 }  // large, still finite
    let stored = try BF16Tensor(converting: source, name: "w")
    #expect(stored.shape == [5, 1001] && stored.count == source.count)
    let widened = stored.widened()
    #expect(widened.shape == source.shape)
    let expected = source.values.map(BFloat16.rounded)
    #expect(widened.values == expected)
    #expect(stored[17] == expected[17])
    let copy = source.clone()
    BFloat16.round(copy)
    #expect(copy.values == expected)
  }

  /// Storing a tensor that bf16 cannot hold names the tensor and the first bad element.
  @Test(arguments: [Float.infinity, -Float.nan, 3.4e38])
  func unrepresentableValuesNameTheTensor(value: Float) {
    let source = randomTensor([3, 4000], seed: 73)
    source[5000] = value  // in the second block of the scan
    source[11_000] = .nan
    #expect {
      try BF16Tensor(converting: source, name: "blk.0.ffn_up.weight")
    } throws: { error in
      guard case .notRepresentable(let tensor, let index, _) = error as? BF16Error else { return false }
      return tensor == "blk.0.ffn_up.weight" && index == 5000
        && "\(error)".contains("blk.0.ffn_up.weight: element 5000")
    }
    source[5000] = 1
    source[11_000] = -3.38e38
    #expect(throws: Never.self) { try BF16Tensor(converting: source, name: "w") }
  }
}

/// The array conversion (C, 16 or 8 lanes by the CPU) gives `bits` of every element, on each
/// code path, for any bit pattern (NaNs, infinities, subnormals, ties) and every tail length.
@Suite struct BFloat16ArrayConversionTests {
  @Test(arguments: [16, 8, 1])
  func everyPathGivesTheBitsOfEachElement(lanes: Int) {
    var random = SeededRandom(seed: 91)
    var values = (0..<4099).map { _ in Float(bitPattern: UInt32(truncatingIfNeeded: random.next())) }
    // Ties both ways, the largest finite values, subnormals and signed zeros.
    values += [
      Float(bitPattern: 0x3F80_8000), Float(bitPattern: 0x3F81_8000), Float(bitPattern: 0x7F7F_FFFF),
      Float(bitPattern: 0x7F7F_7FFF), Float(bitPattern: 0x0000_8001), Float(bitPattern: 0x8000_7FFF), 0, -0,
      .infinity, -.infinity, .nan, Float(bitPattern: 0xFFC0_0001),
    ]
    let expected = values.map(BFloat16.bits)
    for count in Array(0..<40) + [values.count] {
      var converted = [UInt16](repeating: 0xDEAD, count: count + 1)
      values.withUnsafeBufferPointer { source in
        converted.withUnsafeMutableBufferPointer {
          BFloat16.convert($0.baseAddress!, source.baseAddress!, count: count, lanes: lanes)
        }
      }
      #expect(Array(converted.prefix(count)) == Array(expected.prefix(count)), "count \(count)")
      #expect(converted[count] == 0xDEAD, "wrote past \(count) elements")
    }
  }
}
