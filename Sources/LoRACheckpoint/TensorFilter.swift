import Foundation

/// Lossless byte transforms that give LZ4 something to find in float data
/// (docs/checkpoint-format.md, "Filters"). Each works on the little-endian bytes of a tensor
/// whose elements are `elementSize` (2 or 4) bytes.
public enum TensorFilter: String, Codable, Sendable, CaseIterable {
  /// XOR with the same tensor of the delta base.
  case xor
  /// Byte planes: every element's byte 0, then every byte 1, …
  case byteshuffle
  /// Bit planes: for each bit of the element, that bit of every element, 8 to a byte.
  case bitshuffle

  /// The chains the writer tries, without and (for a delta) with `xor` first.
  public static func candidates(delta: Bool) -> [[TensorFilter]] {
    let plain: [[TensorFilter]] = [[], [.byteshuffle], [.bitshuffle]]
    return delta ? plain + plain.map { [.xor] + $0 } : plain
  }

  /// Applies `chain` in order. `reference` (the delta base's bytes) is needed by `xor`.
  static func encode(_ bytes: [UInt8], chain: [TensorFilter], elementSize: Int, reference: [UInt8]?)
    -> [UInt8]
  {
    var data = bytes
    for filter in chain {
      switch filter {
      case .xor: data = xorBytes(data, reference!)
      case .byteshuffle: data = byteShuffle(data, elementSize: elementSize)
      case .bitshuffle: data = bitShuffle(data, elementSize: elementSize)
      }
    }
    return data
  }

  /// Undoes `chain` (in reverse order), giving `rawSize` bytes.
  static func decode(
    _ bytes: [UInt8], chain: [TensorFilter], elementSize: Int, rawSize: Int, reference: [UInt8]?
  ) -> [UInt8] {
    var data = bytes
    for filter in chain.reversed() {
      switch filter {
      case .xor: data = xorBytes(data, reference!)
      case .byteshuffle: data = byteUnshuffle(data, elementSize: elementSize)
      case .bitshuffle: data = bitUnshuffle(data, elementSize: elementSize, rawSize: rawSize)
      }
    }
    return data
  }

  /// The size `chain` turns `rawSize` bytes into (bit-shuffling pads to 8 elements).
  static func encodedSize(rawSize: Int, chain: [TensorFilter], elementSize: Int) -> Int {
    guard chain.contains(.bitshuffle) else { return rawSize }
    let elements = rawSize / elementSize
    return (elements + 7) / 8 * elementSize * 8
  }

  static func xorBytes(_ a: [UInt8], _ b: [UInt8]) -> [UInt8] {
    precondition(a.count == b.count, "xor of \(a.count) and \(b.count) bytes")
    return [UInt8](unsafeUninitializedCapacity: a.count) { out, n in
      for i in 0..<a.count { out[i] = a[i] ^ b[i] }
      n = a.count
    }
  }

  static func byteShuffle(_ input: [UInt8], elementSize: Int) -> [UInt8] {
    let n = input.count / elementSize
    return [UInt8](unsafeUninitializedCapacity: input.count) { out, count in
      for i in 0..<n {
        for j in 0..<elementSize { out[j * n + i] = input[i * elementSize + j] }
      }
      count = input.count
    }
  }

  static func byteUnshuffle(_ input: [UInt8], elementSize: Int) -> [UInt8] {
    let n = input.count / elementSize
    return [UInt8](unsafeUninitializedCapacity: input.count) { out, count in
      for i in 0..<n {
        for j in 0..<elementSize { out[i * elementSize + j] = input[j * n + i] }
      }
      count = input.count
    }
  }

  /// Transposes an 8×8 bit matrix held as 8 bytes of a UInt64 (byte r = row r; bit c of
  /// a byte = column c): afterwards byte c holds column c, bit r of it from row r.
  @inline(__always)
  static func transpose8x8(_ x: UInt64) -> UInt64 {
    var x = x
    var t = (x ^ (x >> 7)) & 0x00AA_00AA_00AA_00AA
    x = x ^ t ^ (t << 7)
    t = (x ^ (x >> 14)) & 0x0000_CCCC_0000_CCCC
    x = x ^ t ^ (t << 14)
    t = (x ^ (x >> 28)) & 0x0000_0000_F0F0_F0F0
    x = x ^ t ^ (t << 28)
    return x
  }

  /// Bit planes: plane p = 8·j + k holds bit k of byte j of every element, element i at
  /// bit i % 8 of byte i / 8 of the plane. Elements are padded with zeros to a multiple of 8.
  static func bitShuffle(_ input: [UInt8], elementSize: Int) -> [UInt8] {
    let n = input.count / elementSize
    let groups = (n + 7) / 8
    let planeBytes = groups
    let outputSize = planeBytes * elementSize * 8
    return [UInt8](unsafeUninitializedCapacity: outputSize) { out, count in
      for g in 0..<groups {
        for j in 0..<elementSize {
          // Row r: byte j of element 8g + r.
          var rows: UInt64 = 0
          for r in 0..<8 {
            let element = g * 8 + r
            if element < n { rows |= UInt64(input[element * elementSize + j]) << (8 * r) }
          }
          let columns = transpose8x8(rows)
          for k in 0..<8 { out[(j * 8 + k) * planeBytes + g] = UInt8(truncatingIfNeeded: columns >> (8 * k)) }
        }
      }
      count = outputSize
    }
  }

  static func bitUnshuffle(_ input: [UInt8], elementSize: Int, rawSize: Int) -> [UInt8] {
    let n = rawSize / elementSize
    let groups = (n + 7) / 8
    let planeBytes = groups
    return [UInt8](unsafeUninitializedCapacity: rawSize) { out, count in
      for g in 0..<groups {
        for j in 0..<elementSize {
          var columns: UInt64 = 0
          for k in 0..<8 { columns |= UInt64(input[(j * 8 + k) * planeBytes + g]) << (8 * k) }
          let rows = transpose8x8(columns)
          for r in 0..<8 {
            let element = g * 8 + r
            if element < n { out[element * elementSize + j] = UInt8(truncatingIfNeeded: rows >> (8 * r)) }
          }
        }
      }
      count = rawSize
    }
  }

  /// The order-0 entropy of `raw`'s bit planes, in bits per element: for each bit position
  /// of the element (after XOR with `reference`, if given), the binary entropy of that bit
  /// over all elements, summed. It bounds what a coder that treats each plane as independent
  /// bits can reach (about elementSize·8 / this), and shows how far LZ4 is from that.
  static func bitPlaneEntropy(_ raw: [UInt8], elementSize: Int, reference: [UInt8]?) -> Double {
    let data = reference.map { xorBytes(raw, $0) } ?? raw
    let n = data.count / elementSize
    guard n > 0 else { return 0 }
    var ones = [Int](repeating: 0, count: elementSize * 8)
    for i in 0..<n {
      for j in 0..<elementSize {
        let byte = data[i * elementSize + j]
        if byte == 0 { continue }
        for k in 0..<8 where byte >> k & 1 == 1 { ones[j * 8 + k] += 1 }
      }
    }
    return ones.reduce(0.0) { total, count in
      let p = Double(count) / Double(n)
      guard p > 0 && p < 1 else { return total }
      return total - p * log2(p) - (1 - p) * log2(1 - p)
    }
  }
}
