import Crypto
import Foundation
import LoRAFormats
import LoRAKernels

/// One row of a checkpoint's tensor table.
public struct CheckpointTensorEntry: Codable, Equatable, Sendable {
  public var name: String
  public var dtype: Tensor.ByteEncoding
  public var shape: [Int]
  /// From the start of the file.
  public var offset: Int
  public var storedSize: Int
  /// Bytes of the tensor in `dtype`, before filters and compression.
  public var rawSize: Int
  /// Applied in this order when writing.
  public var filters: [TensorFilter]
  /// SHA-256 of the stored bytes, hex.
  public var checksum: String

  enum CodingKeys: String, CodingKey {
    case name, dtype, shape, offset, filters, checksum
    case storedSize = "stored_size"
    case rawSize = "raw_size"
  }
}

/// A tensor to write: its bytes are taken in `dtype`; `reference` (the same tensor's raw
/// bytes in the delta base) allows the `xor` chains.
public struct CheckpointTensorSource {
  public var name: String
  public var tensor: Tensor
  public var dtype: Tensor.ByteEncoding
  public var reference: [UInt8]?

  public init(name: String, tensor: Tensor, dtype: Tensor.ByteEncoding = .f32, reference: [UInt8]? = nil) {
    self.name = name
    self.tensor = tensor
    self.dtype = dtype
    self.reference = reference
  }
}

/// Encodes and writes checkpoint files (docs/checkpoint-format.md).
public enum CheckpointWriter {
  /// How the filter chain of each tensor is chosen.
  public enum FilterPolicy: Sendable, Equatable {
    /// Try every candidate chain and keep the smallest result.
    case smallest
    /// Use this chain for every tensor (`xor` is skipped where there is no reference).
    case fixed([TensorFilter])
  }

  /// The complete bytes of a checkpoint file.
  public static func encode(
    header: CheckpointHeader, tensors: [CheckpointTensorSource], policy: FilterPolicy = .smallest
  ) throws -> [UInt8] {
    var file = [UInt8]()
    let headerJSON = try jsonBytes(header)
    file += CheckpointFormat.magic
    file += littleEndian(CheckpointFormat.version)
    file += littleEndian(UInt32(headerJSON.count))
    file += headerJSON
    var table: [CheckpointTensorEntry] = []
    for source in tensors {
      let raw = source.tensor.bytes(source.dtype)
      if let reference = source.reference, reference.count != raw.count {
        throw CheckpointError.mismatch(
          file: source.name, reason: "delta reference has \(reference.count) bytes, the tensor \(raw.count)")
      }
      let (chain, stored) = try compress(
        raw, elementSize: source.dtype.size, reference: source.reference, policy: policy)
      table.append(
        CheckpointTensorEntry(
          name: source.name, dtype: source.dtype, shape: source.tensor.shape, offset: file.count,
          storedSize: stored.count, rawSize: raw.count, filters: chain, checksum: sha256Hex(stored)))
      file += stored
    }
    let tableOffset = file.count
    let tableJSON = try jsonBytes(table)
    file += tableJSON
    var hash = SHA256()
    hash.update(data: file[0..<(CheckpointFormat.preambleSize + headerJSON.count)])
    hash.update(data: tableJSON)
    file += littleEndian(UInt64(tableOffset))
    file += littleEndian(UInt64(tableJSON.count))
    file += Array(hash.finalize())
    file += CheckpointFormat.endMagic
    return file
  }

  /// Filters and compresses `raw` by `policy`; returns the chain used and the stored bytes.
  /// For `.smallest`, a tensor over `sampleLimit` bytes is measured on four slices spread
  /// over it (1 MiB in all), and only the winning chain is applied to the whole.
  static func compress(
    _ raw: [UInt8], elementSize: Int, reference: [UInt8]?, policy: FilterPolicy
  ) throws -> ([TensorFilter], [UInt8]) {
    var chains: [[TensorFilter]]
    switch policy {
    case .smallest: chains = TensorFilter.candidates(delta: reference != nil)
    case .fixed(let chain): chains = [reference == nil ? chain.filter { $0 != .xor } : chain]
    }
    if chains.count > 1 && raw.count > sampleLimit {
      let (sample, sampleReference) = slices(raw, reference, elementSize: elementSize)
      let sizes = try chains.map { chain in
        try LZ4Frame.compress(
          TensorFilter.encode(sample, chain: chain, elementSize: elementSize, reference: sampleReference)
        ).count
      }
      chains = [chains[sizes.firstIndex(of: sizes.min()!)!]]
    }
    var best: ([TensorFilter], [UInt8])?
    for chain in chains {
      let stored = try LZ4Frame.compress(
        TensorFilter.encode(raw, chain: chain, elementSize: elementSize, reference: reference))
      if best == nil || stored.count < best!.1.count { best = (chain, stored) }
    }
    return best!
  }

  /// Tensors larger than this (bytes) choose their filters on a sample.
  static let sampleLimit = 4 << 20

  /// Four slices of 256 KiB spread evenly over `raw` (and the same of `reference`).
  static func slices(_ raw: [UInt8], _ reference: [UInt8]?, elementSize: Int) -> ([UInt8], [UInt8]?) {
    let slice = (256 << 10) / elementSize * elementSize
    let stride = (raw.count - slice) / 3 / elementSize * elementSize
    var sample: [UInt8] = []
    var sampleReference: [UInt8]? = reference == nil ? nil : []
    for k in 0..<4 {
      let range = (k * stride)..<(k * stride + slice)
      sample += raw[range]
      if let reference { sampleReference! += reference[range] }
    }
    return (sample, sampleReference)
  }

  /// The stored size of `raw` under every candidate chain, smallest first (what
  /// `inspect --filters` reports).
  public static func measureFilters(
    _ raw: [UInt8], elementSize: Int, reference: [UInt8]?
  ) throws -> [(chain: [TensorFilter], storedSize: Int)] {
    try TensorFilter.candidates(delta: reference != nil).map { chain in
      let stored = try LZ4Frame.compress(
        TensorFilter.encode(raw, chain: chain, elementSize: elementSize, reference: reference))
      return (chain, stored.count)
    }.sorted { $0.storedSize < $1.storedSize }
  }

  /// Order-0 bit-plane entropy of `raw` (XORed with `reference` when given), in bits per
  /// element: the best ratio a per-plane entropy coder could reach is elementSize·8 / this.
  public static func bitPlaneEntropy(_ raw: [UInt8], elementSize: Int, reference: [UInt8]?) -> Double {
    TensorFilter.bitPlaneEntropy(raw, elementSize: elementSize, reference: reference)
  }

  /// For the fault drills (`scripts/drills`) only: seconds to pause halfway through writing
  /// each checkpoint (environment `SWIFT_LORA_DIST_DRILL_WRITE_PAUSE`), so that a drill can
  /// kill a rank while a checkpoint is half written. Unset in every normal run.
  static let drillWritePause: Double? = ProcessInfo.processInfo.environment[
    "SWIFT_LORA_DIST_DRILL_WRITE_PAUSE"
  ].flatMap(Double.init).flatMap { $0 > 0 ? $0 : nil }

  /// Writes `bytes` to `url` safely (`AtomicFile`): a temporary file in the same folder,
  /// fsync, rename over `url`, fsync of the folder. On failure the temporary file is removed
  /// and `url` (and everything else in the folder) is as it was.
  public static func writeAtomically(_ bytes: [UInt8], to url: URL) throws {
    do {
      let file = try AtomicFile(path: url.path, overwrite: true)
      if let pause = drillWritePause, bytes.count > 1 {
        try file.write(Array(bytes[..<(bytes.count / 2)]))
        Thread.sleep(forTimeInterval: pause)
        try file.write(Array(bytes[(bytes.count / 2)...]))
      } else {
        try file.write(bytes)
      }
      try file.commit()
    } catch let error as FormatError {
      throw CheckpointError.writeFailed(path: url.path, reason: "\(error)")
    }
  }

  static func jsonBytes(_ value: some Encodable) throws -> [UInt8] {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return Array(try encoder.encode(value))
  }

  static func littleEndian<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    (0..<(T.bitWidth / 8)).map { UInt8(truncatingIfNeeded: value >> ($0 * 8)) }
  }
}

/// Lower-case hex of a byte sequence.
func hex(_ bytes: some Sequence<UInt8>) -> String {
  let digits = Array("0123456789abcdef".utf8)
  var out = [UInt8]()
  for b in bytes {
    out.append(digits[Int(b >> 4)])
    out.append(digits[Int(b & 15)])
  }
  return String(decoding: out, as: UTF8.self)
}

func sha256Hex(_ bytes: [UInt8]) -> String { hex(SHA256.hash(data: bytes)) }
