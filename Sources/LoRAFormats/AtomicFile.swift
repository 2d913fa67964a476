import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// A file written whole or not at all: bytes go to a hidden temporary file in the target's
/// folder, which `commit` flushes to disk (fsync) and renames over the target (rename(2) is
/// atomic: readers see the old file or the complete new one). `discard` (or dropping the
/// value without committing) removes the temporary file, so a failure leaves nothing behind.
public final class AtomicFile {
  /// The file that `commit` creates or replaces.
  public let path: String
  /// The temporary file being written.
  public let temporaryPath: String
  private var handle: FileHandle?
  private var committed = false

  /// Opens a temporary file beside `path`. Refuses an existing `path` unless `overwrite`.
  public init(path: String, overwrite: Bool) throws {
    let url = URL(fileURLWithPath: path).standardizedFileURL
    self.path = url.path
    let folder = url.deletingLastPathComponent().path
    var isFolder: ObjCBool = false
    guard FileManager.default.fileExists(atPath: folder, isDirectory: &isFolder), isFolder.boolValue else {
      throw FormatError.unwritable(file: self.path, reason: "the folder \(folder) does not exist")
    }
    if FileManager.default.fileExists(atPath: self.path, isDirectory: &isFolder) {
      if isFolder.boolValue {
        throw FormatError.unwritable(file: self.path, reason: "a folder of that name exists")
      }
      if !overwrite {
        throw FormatError.unwritable(
          file: self.path, reason: "the file exists; choose another name or allow overwriting (--overwrite)")
      }
    }
    temporaryPath = folder + "/.\(url.lastPathComponent).partial-\(UUID().uuidString.prefix(8))"
    guard FileManager.default.createFile(atPath: temporaryPath, contents: nil),
      let handle = FileHandle(forWritingAtPath: temporaryPath)
    else {
      throw FormatError.unwritable(file: self.path, reason: "cannot create a temporary file in \(folder)")
    }
    self.handle = handle
  }

  deinit { if !committed { discard() } }

  /// Appends `bytes`.
  public func write(_ bytes: [UInt8]) throws {
    guard let handle else {
      throw FormatError.unwritable(file: path, reason: "already committed or discarded")
    }
    do { try handle.write(contentsOf: bytes) } catch {
      discard()
      throw FormatError.unwritable(file: path, reason: Self.reason(error))
    }
  }

  /// Flushes the temporary file to disk and renames it over `path`.
  public func commit() throws {
    guard let handle else {
      throw FormatError.unwritable(file: path, reason: "already committed or discarded")
    }
    do {
      try handle.synchronize()
      try handle.close()
    } catch {
      discard()
      throw FormatError.unwritable(file: path, reason: Self.reason(error))
    }
    self.handle = nil
    guard rename(temporaryPath, path) == 0 else {
      let reason = String(cString: strerror(errno))
      discard()
      throw FormatError.unwritable(file: path, reason: reason)
    }
    committed = true
    // Make the rename itself durable.
    let folder = URL(fileURLWithPath: path).deletingLastPathComponent().path
    if let directory = FileHandle(forReadingAtPath: folder) {
      try? directory.synchronize()
      try? directory.close()
    }
  }

  /// Removes the temporary file (nothing is written to `path`).
  public func discard() {
    try? handle?.close()
    handle = nil
    if !committed { try? FileManager.default.removeItem(atPath: temporaryPath) }
  }

  /// The system's words for a failed write: "No space left on device" for a full
  /// filesystem (Foundation reports it as `fileWriteOutOfSpace`, or as the POSIX error),
  /// else Foundation's description.
  static func reason(_ error: any Error) -> String {
    let error = error as NSError
    let underlying = error.userInfo[NSUnderlyingErrorKey] as? NSError
    let posix = [error, underlying].compactMap { $0 }.first { $0.domain == NSPOSIXErrorDomain }.map {
      Int32($0.code)
    }
    if let posix { return String(cString: strerror(posix)) }
    if error.domain == NSCocoaErrorDomain && error.code == CocoaError.fileWriteOutOfSpace.rawValue {
      return String(cString: strerror(ENOSPC))
    }
    return error.localizedDescription
  }
}
