/// GPT-2's `bytes_to_unicode`: printable bytes 33–126, 161–172 and 174–255 stand for
/// themselves, the other 68 bytes for U+0100 upwards in byte order.
enum ByteLevel {
  /// The character each byte is written as.
  static let encoder: [Unicode.Scalar] = {
    var next: UInt32 = 256
    return (0..<256).map { byte -> Unicode.Scalar in
      switch byte {
      case 33...126, 161...172, 174...255:
        return Unicode.Scalar(UInt32(byte))!
      default:
        defer { next += 1 }
        return Unicode.Scalar(next)!
      }
    }
  }()

  /// `decoder[c]` is the byte character `c` stands for, or -1.
  private static let decoder: [Int16] = {
    var table = [Int16](repeating: -1, count: 324)
    for (byte, scalar) in encoder.enumerated() { table[Int(scalar.value)] = Int16(byte) }
    return table
  }()

  /// The byte a byte-level character stands for; nil if it is not one of the 256.
  static func byte(for scalar: Unicode.Scalar) -> UInt8? {
    let value = Int(scalar.value)
    guard value < decoder.count, decoder[value] >= 0 else { return nil }
    return UInt8(decoder[value])
  }
}
