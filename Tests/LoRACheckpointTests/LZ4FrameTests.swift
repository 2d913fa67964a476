import Testing

@testable import LoRACheckpoint

/// Bytes with some structure (LZ4 finds repeats) and some noise.
func sampleBytes(_ count: Int, seed: UInt32 = 7) -> [UInt8] {
  var state = seed
  return (0..<count).map { i in
    state = state &* 1_664_525 &+ 1_013_904_223
    return i % 3 == 0 ? UInt8(truncatingIfNeeded: state >> 24) : UInt8(truncatingIfNeeded: i / 97)
  }
}

@Suite struct LZ4FrameTests {
  @Test(arguments: [0, 1, 17, 65_536, 5_000_000])
  func roundTrips(count: Int) throws {
    let input = sampleBytes(count)
    let frame = try LZ4Frame.compress(input)
    #expect(try LZ4Frame.decompress(frame) == input)
  }

  @Test func compressesRepetitiveData() throws {
    let zeros = [UInt8](repeating: 0, count: 1 << 20)
    let frame = try LZ4Frame.compress(zeros)
    #expect(frame.count < zeros.count / 100)
    #expect(try LZ4Frame.decompress(frame) == zeros)
  }

  @Test func highCompressionLevelRoundTrips() throws {
    let input = sampleBytes(200_000)
    let fast = try LZ4Frame.compress(input)
    let high = try LZ4Frame.compress(input, level: 9)
    #expect(high.count <= fast.count)
    #expect(try LZ4Frame.decompress(high) == input)
  }

  @Test(arguments: [1, 6, 7, 15, 100, 5000])
  func truncatedFrameThrows(keep: Int) throws {
    let frame = try LZ4Frame.compress(sampleBytes(100_000))
    #expect(throws: LZ4FrameError.self) { try LZ4Frame.decompress(Array(frame.prefix(keep))) }
  }

  @Test func frameMissingOnlyItsChecksumThrows() throws {
    let frame = try LZ4Frame.compress(sampleBytes(10_000))
    #expect(throws: LZ4FrameError.self) { try LZ4Frame.decompress(Array(frame.dropLast(4))) }
  }

  @Test func everyFlippedByteIsDetected() throws {
    let input = sampleBytes(3000)
    let frame = try LZ4Frame.compress(input)
    // Flip each byte of the frame in turn: header, block sizes, data and checksums.
    for position in stride(from: 0, to: frame.count, by: 1) {
      var damaged = frame
      damaged[position] ^= 0x5A
      var decoded: [UInt8]?
      do { decoded = try LZ4Frame.decompress(damaged) } catch {}
      #expect(decoded == nil, "a flipped byte at \(position) of \(frame.count) went unnoticed")
    }
  }

  @Test func trailingBytesThrow() throws {
    let frame = try LZ4Frame.compress(sampleBytes(1000))
    #expect(throws: LZ4FrameError.trailingBytes(3)) { try LZ4Frame.decompress(frame + [1, 2, 3]) }
  }

  @Test func notAFrameThrowsCorrupt() {
    let text = Array("this is not an LZ4 frame at all".utf8)
    #expect {
      try LZ4Frame.decompress(text)
    } throws: { error in
      guard case LZ4FrameError.corrupt = error else { return false }
      return "\(error)".contains("corrupt")
    }
  }

  @Test func declaredSizeAboveTheLimitThrows() throws {
    let frame = try LZ4Frame.compress(sampleBytes(10_000))
    #expect(throws: LZ4FrameError.tooLarge(limit: 1000)) { try LZ4Frame.decompress(frame, maximumSize: 1000) }
  }
}
