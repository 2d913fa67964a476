import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// A whole file mapped read-only into memory. The mapping lives as long as this object;
/// tensors that use file data in place keep it alive.
///
/// One of the C-facing files: `open`/`mmap`/`munmap` and raw pointers stay in here and in
/// `ByteReader`.
public final class MappedFile: @unchecked Sendable {
  public let path: String
  public let size: Int
  package let base: UnsafeRawPointer

  public init(path: String) throws {
    self.path = path
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { throw FormatError.unreadable(file: path, reason: String(cString: strerror(errno))) }
    defer { close(fd) }
    var info = stat()
    guard fstat(fd, &info) == 0 else {
      throw FormatError.unreadable(file: path, reason: String(cString: strerror(errno)))
    }
    guard (info.st_mode & S_IFMT) == S_IFREG else {
      throw FormatError.unreadable(file: path, reason: "not a regular file")
    }
    size = Int(info.st_size)
    if size == 0 {
      base = UnsafeRawPointer(UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 64))
      return
    }
    guard let mapped = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), mapped != MAP_FAILED else {
      throw FormatError.unreadable(file: path, reason: String(cString: strerror(errno)))
    }
    base = UnsafeRawPointer(mapped)
  }

  deinit {
    if size == 0 {
      UnsafeMutableRawPointer(mutating: base).deallocate()
    } else {
      munmap(UnsafeMutableRawPointer(mutating: base), size)
    }
  }

  /// Lets the kernel drop this process's pages of bytes `offset..<offset + count` (whole
  /// pages inside the range only). The mapping is private and never written, so a later
  /// read faults the same bytes back in from the page cache: this only lowers the resident
  /// memory of data already converted into memory of its own.
  public func releasePages(offset: Int, count: Int) {
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    let start = (offset + page - 1) / page * page
    let end = min(offset + count, size) / page * page
    guard size > 0, end > start else { return }
    _ = madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, MADV_DONTNEED)
  }

  /// A copy of `count` bytes at `offset` (bounds-checked by the caller).
  package func bytes(at offset: Int, count: Int) -> [UInt8] {
    Array(UnsafeRawBufferPointer(start: base + offset, count: count))
  }
}

/// Bounds-checked little-endian reads from a mapped file, advancing a cursor. Every read
/// past the end throws `FormatError.truncated` naming what was being read.
package struct ByteReader {
  let file: MappedFile
  package var offset: Int

  package init(_ file: MappedFile, offset: Int = 0) {
    self.file = file
    self.offset = offset
  }

  package var remaining: Int { file.size - offset }

  package mutating func require(_ count: Int, _ what: @autoclosure () -> String) throws {
    guard count >= 0, count <= remaining else {
      throw FormatError.truncated(file: file.path, what: what(), offset: offset)
    }
  }

  package mutating func read<T: FixedWidthInteger>(_: T.Type, _ what: @autoclosure () -> String) throws -> T {
    try require(MemoryLayout<T>.size, what())
    let value = T(littleEndian: file.base.loadUnaligned(fromByteOffset: offset, as: T.self))
    offset += MemoryLayout<T>.size
    return value
  }

  package mutating func readFloat(_ what: @autoclosure () -> String) throws -> Float {
    Float(bitPattern: try read(UInt32.self, what()))
  }

  package mutating func readDouble(_ what: @autoclosure () -> String) throws -> Double {
    Double(bitPattern: try read(UInt64.self, what()))
  }

  package mutating func readBytes(_ count: Int, _ what: @autoclosure () -> String) throws -> [UInt8] {
    try require(count, what())
    let bytes = file.bytes(at: offset, count: count)
    offset += count
    return bytes
  }

  package mutating func skip(_ count: Int, _ what: @autoclosure () -> String) throws {
    try require(count, what())
    offset += count
  }
}
