import CVectorMath

/// bfloat16 storage: the upper 16 bits of an IEEE binary32 (1 sign, 8 exponent, 7 mantissa
/// bits), held as `UInt16`. Same range as Float, 8 significant bits: rounding a value to
/// bf16 changes it by at most 2⁻⁸ of its magnitude (half a unit in the last place); values
/// from `greatestFiniteMagnitude` plus half an ulp upwards become infinite.
///
/// Conversions round to nearest, ties to even (as oneDNN, PyTorch and the AVX-512 BF16
/// instructions do); a NaN stays a NaN (quiet, sign kept), ±inf stays ±inf, and subnormals
/// are kept, not flushed.
public enum BFloat16 {
  /// The largest finite bf16 value, (2 − 2⁻⁷) · 2¹²⁷ ≈ 3.3895e38 (bits 0x7F7F).
  public static let greatestFiniteMagnitude = Float(bitPattern: 0x7F7F_0000)

  /// `value` rounded to the nearest bf16, ties to even, as its 16 bits.
  @inline(__always)
  public static func bits(_ value: Float) -> UInt16 {
    let b = value.bitPattern
    // NaN: keep the sign and the top of the payload, set the quiet bit so it stays a NaN.
    let nan = UInt16(truncatingIfNeeded: b >> 16) | 0x0040
    // Adding 0x7FFF plus the lowest kept bit carries into the kept bits exactly when the
    // dropped half is above one half, or exactly one half with an odd kept part; a carry out
    // of the mantissa moves to the next binade, and out of the largest one to infinity.
    let rounded = UInt16(truncatingIfNeeded: (b &+ 0x7FFF &+ ((b >> 16) & 1)) >> 16)
    return b & 0x7FFF_FFFF > 0x7F80_0000 ? nan : rounded
  }

  /// The Float that bf16 `bits` stand for (exact: every bf16 is a Float).
  @inline(__always)
  public static func float(_ bits: UInt16) -> Float { Float(bitPattern: UInt32(bits) << 16) }

  /// `value` rounded to bf16 precision, as a Float.
  @inline(__always)
  public static func rounded(_ value: Float) -> Float { float(bits(value)) }

  /// Whether `value` survives the conversion as a finite number: false for NaN, ±inf and
  /// magnitudes that round up to infinity (the frozen base is checked with this before it is
  /// stored in bf16, so an overflow names its tensor).
  @inline(__always)
  public static func isRepresentable(_ value: Float) -> Bool { rounded(value).isFinite }

  /// Rounds every element of `tensor` to bf16 precision in place (the values a bf16
  /// product sees, for comparisons against fp32 products).
  public static func round(_ tensor: Tensor) {
    tensor.withUnsafeMutableBufferPointer { buffer in
      for i in buffer.indices { buffer[i] = rounded(buffer[i]) }
    }
  }

  /// dst[i] = bits(src[i]) for `count` elements: the same bits, 16 (AVX-512) or 8 (AVX2)
  /// at a time in C, since this package is built for every x86-64 and Swift's own loop gets
  /// only SSE's 4 lanes.
  package static func convert(_ dst: UnsafeMutablePointer<UInt16>, _ src: UnsafePointer<Float>, count: Int) {
    sld_bf16_convert(dst, src, count)
  }

  /// `convert` on the code path of `lanes` (16, 8 or 1), or the widest below it this CPU
  /// runs; for tests that every path gives `bits`.
  package static func convert(
    _ dst: UnsafeMutablePointer<UInt16>, _ src: UnsafePointer<Float>, count: Int, lanes: Int
  ) {
    sld_bf16_convert_lanes(dst, src, count, Int32(lanes))
  }

  /// dst[i] = float(src[i]) for `count` elements.
  package static func widen(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<UInt16>, count: Int) {
    for i in 0..<count { dst[i] = float(src[i]) }
  }

  /// The index of the first of `count` elements that is not representable in bf16, nil
  /// when all are.
  package static func firstUnrepresentable(_ src: UnsafePointer<Float>, count: Int) -> Int? {
    // Finite after rounding means below the midpoint between the largest bf16 and 2¹²⁸.
    let limit: UInt32 = 0x7F7F_8000
    var start = 0
    while start < count {
      // Blocks of 4096 with a max-reduction keep the common, all-finite case a vector loop.
      let end = min(count, start + 4096)
      var largest: UInt32 = 0
      for i in start..<end { largest = max(largest, src[i].bitPattern & 0x7FFF_FFFF) }
      if largest >= limit { return (start..<end).first { !isRepresentable(src[$0]) } }
      start = end
    }
    return nil
  }
}
