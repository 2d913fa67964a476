import Crypto
import Foundation
import LoRAKernels

/// A checkpoint file, read and checked: preamble, version, footer, table and header
/// checksums on open; each tensor's checksum and LZ4 frame when it is read.
public final class CheckpointReader: @unchecked Sendable {
  public let path: String
  public let version: UInt32
  public let header: CheckpointHeader
  public let table: [CheckpointTensorEntry]
  /// The footer's SHA-256 (hex): the file's identity, by which deltas name their base.
  public let checksum: String
  /// File size in bytes.
  public let fileSize: Int
  private let bytes: [UInt8]
  private var deltaBaseReader: CheckpointReader??

  /// Opens and checks `path`.
  ///
  /// - Throws: `CheckpointError` (`notACheckpoint`, `futureVersion`, `truncated`, `corrupt`).
  public init(path: String) throws {
    self.path = path
    guard let data = FileManager.default.contents(atPath: path) else {
      var folder: ObjCBool = false
      if FileManager.default.fileExists(atPath: path, isDirectory: &folder) {
        throw CheckpointError.notACheckpoint(
          file: path, reason: folder.boolValue ? "it is a folder" : "it cannot be read")
      }
      throw CheckpointError.noCheckpoint(path: path, reason: "no such file")
    }
    let bytes = [UInt8](data)
    self.bytes = bytes
    fileSize = bytes.count
    let preamble = CheckpointFormat.preambleSize
    let footer = CheckpointFormat.footerSize
    guard !bytes.isEmpty else {
      throw CheckpointError.notACheckpoint(file: path, reason: "the file is empty")
    }
    guard bytes.count >= 8, Array(bytes[0..<8]) == CheckpointFormat.magic else {
      throw CheckpointError.notACheckpoint(file: path, reason: "it does not start with SLDCKPT")
    }
    guard bytes.count >= preamble else {
      throw CheckpointError.truncated(file: path, reason: "\(bytes.count) bytes, shorter than the preamble")
    }
    version = Self.integer(bytes, at: 8, as: UInt32.self)
    guard version <= CheckpointFormat.version, version >= 1 else {
      if version == 0 { throw CheckpointError.corrupt(file: path, reason: "format version 0") }
      throw CheckpointError.futureVersion(file: path, version: version)
    }
    let headerLength = Int(Self.integer(bytes, at: 12, as: UInt32.self))
    guard bytes.count >= preamble + headerLength + footer,
      Array(bytes[(bytes.count - 8)...]) == CheckpointFormat.endMagic
    else {
      throw CheckpointError.truncated(file: path, reason: "no footer at the end of its \(bytes.count) bytes")
    }
    let end = bytes.count - footer
    let tableOffset = Int(clamping: Self.integer(bytes, at: end, as: UInt64.self))
    let tableLength = Int(clamping: Self.integer(bytes, at: end + 8, as: UInt64.self))
    guard tableOffset >= preamble + headerLength, tableLength >= 0, tableOffset <= end - tableLength,
      tableOffset + tableLength == end
    else {
      throw CheckpointError.corrupt(
        file: path, reason: "the footer locates the tensor table outside the file")
    }
    var hash = SHA256()
    hash.update(data: bytes[0..<(preamble + headerLength)])
    hash.update(data: bytes[tableOffset..<end])
    let stored = Array(bytes[(end + 16)..<(end + 48)])
    guard Array(hash.finalize()) == stored else {
      throw CheckpointError.corrupt(file: path, reason: "header or tensor table does not match its SHA-256")
    }
    checksum = hex(stored)
    do {
      header = try JSONDecoder().decode(
        CheckpointHeader.self, from: Data(bytes[preamble..<(preamble + headerLength)]))
      table = try JSONDecoder().decode([CheckpointTensorEntry].self, from: Data(bytes[tableOffset..<end]))
    } catch {
      throw CheckpointError.corrupt(file: path, reason: "header or table is not the expected JSON: \(error)")
    }
    for entry in table {
      let elements = Tensor.elementCount(entry.shape.map { max($0, 0) })
      guard entry.offset >= preamble + headerLength, entry.storedSize >= 0,
        entry.offset + entry.storedSize <= tableOffset, entry.rawSize == elements * entry.dtype.size
      else {
        throw CheckpointError.corrupt(file: path, reason: "tensor '\(entry.name)' lies outside the data area")
      }
    }
  }

  /// Only the header of the checkpoint at `path` (the preamble and header bytes, not the
  /// rest, and without the checksum check): for decisions that must not read whole files,
  /// like which full checkpoints the kept deltas need.
  public static func peekHeader(path: String) -> CheckpointHeader? {
    guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
    defer { try? handle.close() }
    guard let preamble = try? handle.read(upToCount: CheckpointFormat.preambleSize),
      preamble.count == CheckpointFormat.preambleSize, Array(preamble.prefix(8)) == CheckpointFormat.magic
    else { return nil }
    let length = Int(integer([UInt8](preamble), at: 12, as: UInt32.self))
    guard let json = try? handle.read(upToCount: length), json.count == length else { return nil }
    return try? JSONDecoder().decode(CheckpointHeader.self, from: json)
  }

  /// The table entry of tensor `name`.
  public func entry(_ name: String) -> CheckpointTensorEntry? { table.first { $0.name == name } }

  /// The stored (filtered, compressed) bytes of `entry`, checksum verified.
  public func storedBytes(_ entry: CheckpointTensorEntry) throws -> [UInt8] {
    let stored = Array(bytes[entry.offset..<(entry.offset + entry.storedSize)])
    guard sha256Hex(stored) == entry.checksum else {
      throw CheckpointError.corrupt(file: path, reason: "tensor '\(entry.name)' does not match its SHA-256")
    }
    return stored
  }

  /// The raw bytes of tensor `name` in its dtype, with checksums verified and filters undone
  /// (opening the delta base when the tensor needs it).
  public func rawBytes(_ name: String) throws -> [UInt8] {
    guard let entry = entry(name) else {
      throw CheckpointError.mismatch(file: path, reason: "has no tensor '\(name)'")
    }
    let filtered: [UInt8]
    do {
      filtered = try LZ4Frame.decompress(try storedBytes(entry), maximumSize: entry.rawSize + 64)
    } catch let error as LZ4FrameError {
      throw CheckpointError.corrupt(file: path, reason: "tensor '\(name)': \(error)")
    }
    let expected = TensorFilter.encodedSize(
      rawSize: entry.rawSize, chain: entry.filters, elementSize: entry.dtype.size)
    guard filtered.count == expected else {
      throw CheckpointError.corrupt(
        file: path, reason: "tensor '\(name)' decodes to \(filtered.count) bytes, expected \(expected)")
    }
    var reference: [UInt8]?
    if entry.filters.contains(.xor) {
      guard let base = try deltaBase() else {
        throw CheckpointError.corrupt(
          file: path, reason: "tensor '\(name)' is a delta but the header names no base")
      }
      reference = try base.rawBytes(name)
      guard reference!.count == entry.rawSize else {
        throw CheckpointError.missingDeltaBase(
          file: path, base: base.path, reason: "holds tensor '\(name)' with another size")
      }
    }
    return TensorFilter.decode(
      filtered, chain: entry.filters, elementSize: entry.dtype.size, rawSize: entry.rawSize,
      reference: reference)
  }

  /// Reads tensor `name` into `tensor` (same element count), widening 16-bit storage.
  public func read(_ name: String, into tensor: Tensor) throws {
    guard let entry = entry(name) else {
      throw CheckpointError.mismatch(file: path, reason: "has no tensor '\(name)'")
    }
    guard Tensor.elementCount(entry.shape) == tensor.count else {
      throw CheckpointError.mismatch(
        file: path, reason: "tensor '\(name)' has shape \(entry.shape), expected \(tensor.count) elements")
    }
    tensor.setBytes(try rawBytes(name), entry.dtype)
  }

  /// The full checkpoint this delta was written against (nil for a full checkpoint),
  /// checked to be the very file: same folder, same footer checksum.
  public func deltaBase() throws -> CheckpointReader? {
    if let cached = deltaBaseReader { return cached }
    guard let delta = header.deltaBase else {
      deltaBaseReader = .some(nil)
      return nil
    }
    let basePath = URL(fileURLWithPath: path).deletingLastPathComponent().appendingPathComponent(delta.file)
      .path
    let base: CheckpointReader
    do { base = try CheckpointReader(path: basePath) } catch {
      throw CheckpointError.missingDeltaBase(file: path, base: delta.file, reason: "cannot be read: \(error)")
    }
    guard base.checksum == delta.checksum else {
      throw CheckpointError.missingDeltaBase(
        file: path, base: delta.file, reason: "is another file than the one it was written against")
    }
    guard base.header.deltaBase == nil else {
      throw CheckpointError.missingDeltaBase(file: path, base: delta.file, reason: "is itself a delta")
    }
    deltaBaseReader = .some(base)
    return base
  }

  /// Decodes every tensor, checking every checksum (and the delta base's).
  public func verify() throws {
    for entry in table { _ = try rawBytes(entry.name) }
  }

  static func integer<T: FixedWidthInteger>(_ bytes: [UInt8], at offset: Int, as: T.Type) -> T {
    var value: T = 0
    for i in 0..<(T.bitWidth / 8) { value |= T(bytes[offset + i]) << (8 * i) }
    return value
  }
}
