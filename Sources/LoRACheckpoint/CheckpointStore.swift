import Dispatch
import Foundation
import LoRAKernels

/// A run's checkpoint folder: names (`step-SSSSSSSS.sldckpt`), full and delta checkpoints,
/// the keep-last-K policy, and finding the newest valid checkpoint to resume from
/// (docs/checkpoint-format.md).
public final class CheckpointStore {
  /// What one save did.
  public struct Saved: Sendable {
    public var path: String
    public var step: Int
    public var fileBytes: Int
    /// The tensors' bytes before filtering and compression.
    public var rawBytes: Int
    /// Nil for a full checkpoint; else the base's file name.
    public var deltaOf: String?
    public var seconds: Double
    /// Files the keep policy removed.
    public var removed: [String]
  }

  public let folder: URL
  /// Checkpoints kept (the newest), besides the full ones they depend on.
  public let keep: Int
  /// Every `fullEvery`-th checkpoint is full; the others are deltas of the newest full one.
  public let fullEvery: Int
  /// The newest full checkpoint this store wrote: file name, checksum and its tensors' bytes.
  private var lastFull: (name: String, checksum: String, tensors: [String: [UInt8]])?
  private var savesSinceFull = 0

  public init(folder: URL, keep: Int, fullEvery: Int) throws {
    guard keep >= 1 else {
      throw CheckpointError.mismatch(file: folder.path, reason: "keep must be at least 1")
    }
    guard fullEvery >= 1 else {
      throw CheckpointError.mismatch(file: folder.path, reason: "full-every must be at least 1")
    }
    self.folder = folder
    self.keep = keep
    self.fullEvery = fullEvery
  }

  /// The file name of the checkpoint after `step` updates.
  public static func fileName(step: Int) -> String {
    let digits = String(step)
    return "step-" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits + "."
      + CheckpointFormat.fileExtension
  }

  /// The step a checkpoint file name encodes, or nil for other names.
  public static func step(ofFileName name: String) -> Int? {
    guard name.hasPrefix("step-"), name.hasSuffix("." + CheckpointFormat.fileExtension) else { return nil }
    return Int(name.dropFirst(5).dropLast(CheckpointFormat.fileExtension.count + 1))
  }

  /// Checkpoint files in `folder`, oldest step first.
  public static func list(_ folder: URL) -> [(step: Int, url: URL)] {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
    return names.compactMap { name in step(ofFileName: name).map { ($0, folder.appendingPathComponent(name)) }
    }
    .sorted { $0.step < $1.step }
  }

  /// Writes the checkpoint of `header` (whose `deltaBase` this store sets) with `tensors`
  /// (name → tensor, written in the order given), then applies the keep policy.
  ///
  /// - Throws: `CheckpointError.writeFailed`; earlier checkpoints are then untouched.
  public func save(
    header: CheckpointHeader, tensors: [(name: String, tensor: Tensor)], step: Int
  ) throws -> Saved {
    let started = DispatchTime.now().uptimeNanoseconds
    do {
      try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    } catch {
      throw CheckpointError.writeFailed(
        path: folder.path, reason: "cannot create the folder: \(error.localizedDescription)")
    }
    let name = Self.fileName(step: step)
    var header = header
    let full = lastFull == nil || savesSinceFull + 1 >= fullEvery
    var sources: [CheckpointTensorSource] = []
    var raws: [String: [UInt8]] = [:]
    for (tensorName, tensor) in tensors {
      var source = CheckpointTensorSource(name: tensorName, tensor: tensor, dtype: header.precision)
      if !full, let base = lastFull { source.reference = base.tensors[tensorName] }
      sources.append(source)
      if full { raws[tensorName] = tensor.bytes(header.precision) }
    }
    header.deltaBase = full ? nil : lastFull.map { .init(file: $0.name, checksum: $0.checksum) }
    let bytes = try CheckpointWriter.encode(header: header, tensors: sources)
    let url = folder.appendingPathComponent(name)
    try CheckpointWriter.writeAtomically(bytes, to: url)
    if full {
      lastFull = (name, hex(bytes[(bytes.count - 40)..<(bytes.count - 8)]), raws)
      savesSinceFull = 0
    } else {
      savesSinceFull += 1
    }
    let removed = prune(upTo: step)
    return Saved(
      path: url.path, step: step, fileBytes: bytes.count,
      rawBytes: sources.reduce(0) { $0 + $1.tensor.count * $1.dtype.size }, deltaOf: header.deltaBase?.file,
      seconds: Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9, removed: removed)
  }

  /// Keeps the `keep` newest checkpoints up to `step` and every full checkpoint one of them
  /// is a delta of; removes the other checkpoints up to `step` and stale temporary files.
  /// Checkpoints after `step` (left by an earlier run that went further) are not touched.
  func prune(upTo step: Int) -> [String] {
    let files = Self.list(folder).filter { $0.step <= step }
    let kept = Array(files.suffix(keep))
    var needed = Set(kept.map { $0.url.lastPathComponent })
    for file in kept {
      if let base = CheckpointReader.peekHeader(path: file.url.path)?.deltaBase { needed.insert(base.file) }
    }
    var removed: [String] = []
    for file in files where !needed.contains(file.url.lastPathComponent) {
      if (try? FileManager.default.removeItem(at: file.url)) != nil {
        removed.append(file.url.lastPathComponent)
      }
    }
    let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
    for name in names where name.hasPrefix(".step-") && name.contains(".partial-") {
      try? FileManager.default.removeItem(at: folder.appendingPathComponent(name))
    }
    return removed
  }

  /// The checkpoint to resume from: `path` itself when it is a file, else the newest file
  /// in the folder `path` (or `path/checkpoints`) that opens and verifies completely.
  /// Newer files that do not are returned in `skipped` with the reason.
  public static func newestValid(_ path: String) throws -> (
    reader: CheckpointReader, skipped: [(file: String, reason: String)]
  ) {
    var isFolder: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
      throw CheckpointError.noCheckpoint(path: path, reason: "no such file or folder")
    }
    if !isFolder.boolValue {
      let reader = try CheckpointReader(path: path)
      try reader.verify()
      return (reader, [])
    }
    var folder = URL(fileURLWithPath: path)
    if list(folder).isEmpty && !list(folder.appendingPathComponent("checkpoints")).isEmpty {
      folder = folder.appendingPathComponent("checkpoints")
    }
    var skipped: [(String, String)] = []
    for file in list(folder).reversed() {
      do {
        let reader = try CheckpointReader(path: file.url.path)
        try reader.verify()
        return (reader, skipped)
      } catch {
        skipped.append((file.url.path, "\(error)"))
      }
    }
    throw CheckpointError.noCheckpoint(
      path: folder.path,
      reason: skipped.isEmpty
        ? "holds no checkpoint (step-*.\(CheckpointFormat.fileExtension))"
        : "none of its \(skipped.count) checkpoints is valid; the newest: \(skipped[0].1)")
  }
}
