/// Tensors as little-endian bytes, for file formats (checkpoints, fingerprints).
extension Tensor {
  // The byte copies below assume a little-endian host (x86-64, arm64).
  /// The stored element types a tensor's values can be written as.
  public enum ByteEncoding: String, Codable, Sendable, CaseIterable {
    case f32
    case f16
    case bf16

    /// Bytes per element.
    public var size: Int { self == .f32 ? 4 : 2 }
  }

  /// Elements `range` (default all) as little-endian bytes of `encoding` (bf16 rounds to
  /// nearest even as PyTorch does; f16 as `Float16(_:)`).
  public func bytes(_ encoding: ByteEncoding = .f32, range: Range<Int>? = nil) -> [UInt8] {
    let range = range ?? 0..<count
    precondition(range.lowerBound >= 0 && range.upperBound <= count, "byte range \(range) of \(count)")
    let n = range.count
    return [UInt8](unsafeUninitializedCapacity: n * encoding.size) { buffer, initialized in
      let source = base + range.lowerBound
      switch encoding {
      case .f32:
        // Float32 in memory is already little-endian IEEE 754 on every platform we build for.
        if n > 0 { UnsafeMutableRawPointer(buffer.baseAddress!).copyMemory(from: source, byteCount: 4 * n) }
      case .f16:
        for i in 0..<n {
          let bits = Float16(source[i]).bitPattern
          buffer[2 * i] = UInt8(truncatingIfNeeded: bits)
          buffer[2 * i + 1] = UInt8(truncatingIfNeeded: bits >> 8)
        }
      case .bf16:
        for i in 0..<n {
          let value = source[i]
          let bits = value.bitPattern
          let rounded = value.isNaN ? (bits | 0x0040_0000) : bits &+ 0x7FFF &+ ((bits >> 16) & 1)
          buffer[2 * i] = UInt8(truncatingIfNeeded: rounded >> 16)
          buffer[2 * i + 1] = UInt8(truncatingIfNeeded: rounded >> 24)
        }
      }
      initialized = n * encoding.size
    }
  }

  /// Sets every element from little-endian bytes of `encoding`; `bytes` must hold exactly
  /// `count` elements.
  public func setBytes(_ bytes: [UInt8], _ encoding: ByteEncoding = .f32) {
    precondition(
      bytes.count == count * encoding.size, "\(bytes.count) bytes for \(count) \(encoding) elements")
    bytes.withUnsafeBufferPointer { b in
      switch encoding {
      case .f32:
        for i in 0..<count {
          let bits =
            UInt32(b[4 * i]) | UInt32(b[4 * i + 1]) << 8 | UInt32(b[4 * i + 2]) << 16 | UInt32(b[4 * i + 3])
            << 24
          base[i] = Float(bitPattern: bits)
        }
      case .f16:
        for i in 0..<count {
          base[i] = Float(Float16(bitPattern: UInt16(b[2 * i]) | UInt16(b[2 * i + 1]) << 8))
        }
      case .bf16:
        for i in 0..<count {
          base[i] = Float(bitPattern: UInt32(b[2 * i]) << 16 | UInt32(b[2 * i + 1]) << 24)
        }
      }
    }
  }
}
