import CLZ4

/// Why an LZ4 frame could not be written or read.
public enum LZ4FrameError: Error, Equatable, CustomStringConvertible {
  /// liblz4 refused to compress (its error name).
  case compressionFailed(String)
  /// The data is not a valid LZ4 frame or fails its checksum (liblz4's error name).
  case corrupt(String)
  /// The frame ends before it is complete.
  case truncated(bytes: Int)
  /// Bytes follow the end of the frame.
  case trailingBytes(Int)
  /// The frame decodes to more bytes than its header or the caller allows.
  case tooLarge(limit: Int)
  /// The decoded size differs from the size the header declared.
  case sizeMismatch(declared: Int, decoded: Int)

  public var description: String {
    switch self {
    case .compressionFailed(let name): return "LZ4 compression failed: \(name)"
    case .corrupt(let name):
      return "LZ4 frame is corrupt (\(name)); the file was damaged or is not an LZ4 frame"
    case .truncated(let bytes):
      return "LZ4 frame is truncated: its \(bytes) bytes end before the frame does"
    case .trailingBytes(let count): return "LZ4 frame is followed by \(count) unexpected bytes"
    case .tooLarge(let limit): return "LZ4 frame decodes to more than the allowed \(limit) bytes"
    case .sizeMismatch(let declared, let decoded):
      return "LZ4 frame declares \(declared) bytes but decodes to \(decoded)"
    }
  }
}

/// Whole-buffer LZ4 frames with content size, content checksum and block checksums on, so
/// damaged data is detected instead of decoded to garbage.
public enum LZ4Frame {
  /// Compresses `input` into one LZ4 frame.
  ///
  /// - Parameter level: 0 is LZ4's fast mode (GB/s); 3…12 select LZ4-HC, slower to write and
  ///   as fast to read.
  public static func compress(_ input: [UInt8], level: Int = 0) throws -> [UInt8] {
    var preferences = LZ4F_preferences_t()
    preferences.frameInfo.blockSizeID = LZ4F_max4MB
    preferences.frameInfo.blockMode = LZ4F_blockIndependent
    preferences.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled
    preferences.frameInfo.blockChecksumFlag = LZ4F_blockChecksumEnabled
    preferences.frameInfo.contentSize = UInt64(input.count)
    preferences.compressionLevel = Int32(level)
    let bound = LZ4F_compressFrameBound(input.count, &preferences)
    var output = [UInt8](repeating: 0, count: bound)
    let written = input.withUnsafeBytes { source in
      output.withUnsafeMutableBytes { destination in
        LZ4F_compressFrame(
          destination.baseAddress, destination.count, source.baseAddress, source.count, &preferences)
      }
    }
    if LZ4F_isError(written) != 0 { throw LZ4FrameError.compressionFailed(errorName(written)) }
    output.removeLast(output.count - written)
    return output
  }

  /// Decompresses one complete LZ4 frame, verifying its checksums and size.
  ///
  /// - Parameter maximumSize: refuse frames that decode to more bytes than this (guards
  ///   against a damaged or hostile size field).
  /// - Throws: `LZ4FrameError` for corrupt, truncated, oversized or padded input.
  public static func decompress(_ input: [UInt8], maximumSize: Int = 1 << 36) throws -> [UInt8] {
    var context: OpaquePointer?
    let created = LZ4F_createDecompressionContext(&context, UInt32(LZ4F_VERSION))
    if LZ4F_isError(created) != 0 { throw LZ4FrameError.corrupt(errorName(created)) }
    defer { LZ4F_freeDecompressionContext(context) }

    var info = LZ4F_frameInfo_t()
    var consumed = input.count
    let status = input.withUnsafeBytes { source in
      LZ4F_getFrameInfo(context, &info, source.baseAddress, &consumed)
    }
    if LZ4F_isError(status) != 0 {
      if input.count < 7 { throw LZ4FrameError.truncated(bytes: input.count) }
      throw LZ4FrameError.corrupt(errorName(status))
    }
    let declared = Int(clamping: info.contentSize)  // 0: size not recorded
    if declared > maximumSize { throw LZ4FrameError.tooLarge(limit: maximumSize) }

    var output = [UInt8](repeating: 0, count: declared > 0 ? declared : 1 << 16)
    var produced = 0
    var finished = false
    while !finished {
      if produced == output.count {
        if output.count >= maximumSize { throw LZ4FrameError.tooLarge(limit: maximumSize) }
        output.append(contentsOf: repeatElement(0, count: min(output.count, maximumSize - output.count)))
      }
      var sourceSize = input.count - consumed
      var destinationSize = output.count - produced
      let hint = input.withUnsafeBytes { source in
        output.withUnsafeMutableBytes { destination in
          LZ4F_decompress(
            context, destination.baseAddress! + produced, &destinationSize,
            source.baseAddress.map { $0 + consumed }, &sourceSize, nil)
        }
      }
      if LZ4F_isError(hint) != 0 { throw LZ4FrameError.corrupt(errorName(hint)) }
      consumed += sourceSize
      produced += destinationSize
      finished = hint == 0
      if !finished && consumed == input.count && destinationSize == 0 && produced < output.count {
        throw LZ4FrameError.truncated(bytes: input.count)
      }
    }
    if consumed != input.count { throw LZ4FrameError.trailingBytes(input.count - consumed) }
    if declared > 0 && produced != declared {
      throw LZ4FrameError.sizeMismatch(declared: declared, decoded: produced)
    }
    output.removeLast(output.count - produced)
    return output
  }

  private static func errorName(_ code: Int) -> String {
    guard let name = LZ4F_getErrorName(code) else { return "error \(code)" }
    return String(cString: name)
  }
}
