import LoRAKernels

/// Writes GGUF version 3 files (little-endian), the format `GGUFFile` reads and llama.cpp
/// loads: magic "GGUF", version, tensor and metadata counts, metadata key/values, the tensor
/// table (name, dimensions in ggml order, type, offset), padding to `general.alignment`,
/// then each tensor's data at an offset that is a multiple of the alignment.
///
/// Tensors are given with their row-major shape (a linear weight is [OUT, IN]); the table
/// stores the dimensions reversed (ggml's `ne`, innermost first), as `GGUFTensorInfo.shape`
/// reverses them back. Tensor data may be produced lazily, one tensor at a time, so a
/// large model is converted while it is written.
///
/// The file is written atomically (see `AtomicFile`): a failure leaves no partial file.
public struct GGUFWriter {
  /// A tensor to write: its data is asked for once, when its turn comes.
  struct Entry {
    var name: String
    var shape: [Int]
    var type: GGMLType
    var data: () throws -> Tensor
  }

  /// Metadata in file order; `general.alignment` is always written first.
  public private(set) var metadata: [(key: String, value: GGUFValue)] = []
  private(set) var entries: [Entry] = []
  /// The alignment of the data section and of every tensor's data (a power of two).
  public let alignment: Int

  public init(alignment: Int = 32) {
    precondition(alignment > 0 && alignment & (alignment - 1) == 0, "alignment must be a power of two")
    self.alignment = alignment
  }

  /// Sets `key` to `value`, replacing an earlier value in place.
  public mutating func set(_ key: String, _ value: GGUFValue) {
    if let i = metadata.firstIndex(where: { $0.key == key }) {
      metadata[i].value = value
    } else {
      metadata.append((key, value))
    }
  }

  /// Removes `key` if present.
  public mutating func remove(_ key: String) {
    metadata.removeAll { $0.key == key }
  }

  /// Adds tensor `name` of row-major `shape`, stored as `type` (F32, F16 or BF16), whose data
  /// `data` returns when the writer reaches it (it must have `shape`'s element count).
  public mutating func addTensor(
    _ name: String, shape: [Int], type: GGMLType = .f32, data: @escaping () throws -> Tensor
  ) {
    entries.append(Entry(name: name, shape: shape, type: type, data: data))
  }

  /// Adds `tensor` under `name`, stored as `type`.
  public mutating func addTensor(_ name: String, _ tensor: Tensor, type: GGMLType = .f32) {
    addTensor(name, shape: tensor.shape, type: type) { tensor }
  }

  /// Writes the file to `path`. An existing file is refused unless `overwrite`.
  public func write(to path: String, overwrite: Bool = false) throws {
    try validate(path)
    let out = try AtomicFile(path: path, overwrite: overwrite)
    var header = ByteWriter()
    header.append(Array("GGUF".utf8))
    header.append(UInt32(3))
    header.append(UInt64(entries.count))
    let keys =
      [("general.alignment", GGUFValue.uint32(UInt32(alignment)))]
      + metadata.filter { $0.key != "general.alignment" }.map { ($0.key, $0.value) }
    header.append(UInt64(keys.count))
    for (key, value) in keys {
      header.append(string: key)
      header.append(UInt32(Self.typeTag(value)))
      Self.encode(value, into: &header)
    }
    var offset = 0
    var sizes: [Int] = []
    for entry in entries {
      header.append(string: entry.name)
      header.append(UInt32(entry.shape.count))
      for dimension in entry.shape.reversed() { header.append(UInt64(dimension)) }
      header.append(entry.type.rawValue)
      header.append(UInt64(offset))
      let size = entry.type.byteCount(elements: Tensor.elementCount(entry.shape))!
      sizes.append(size)
      offset += (size + alignment - 1) / alignment * alignment
    }
    header.pad(to: alignment)
    try out.write(header.bytes)

    for (entry, size) in zip(entries, sizes) {
      let tensor: Tensor
      do { tensor = try entry.data() } catch {
        out.discard()
        throw error
      }
      guard tensor.count == Tensor.elementCount(entry.shape) else {
        out.discard()
        throw FormatError.invalid(
          file: path,
          message:
            "tensor '\(entry.name)' was declared with shape \(entry.shape) but has \(tensor.count) elements")
      }
      // Convert and write in chunks, so a large tensor needs little extra memory.
      let chunk = 1 << 20
      var start = 0
      while start < tensor.count {
        let count = min(chunk, tensor.count - start)
        try out.write(tensor.bytes(Self.encoding(entry.type), range: start..<(start + count)))
        start += count
      }
      let padding = (size + alignment - 1) / alignment * alignment - size
      if padding > 0 { try out.write([UInt8](repeating: 0, count: padding)) }
    }
    try out.commit()
  }

  /// The byte encoding of a stored type (F32, F16 or BF16; BF16 rounds to nearest even).
  static func encoding(_ type: GGMLType) -> Tensor.ByteEncoding {
    switch type {
    case .f16: return .f16
    case .bf16: return .bf16
    default: return .f32
    }
  }

  /// Checks what can be checked before any byte is written.
  private func validate(_ path: String) throws {
    var seen = Set<String>()
    for (key, value) in metadata {
      guard !key.isEmpty else { throw FormatError.invalid(file: path, message: "a metadata key is empty") }
      try Self.checkArray(value, key: key, path: path, depth: 0)
    }
    for entry in entries {
      guard seen.insert(entry.name).inserted else {
        throw FormatError.invalid(file: path, message: "tensor '\(entry.name)' is added twice")
      }
      guard [.f32, .f16, .bf16].contains(entry.type) else {
        throw FormatError.unsupported(
          file: path,
          message: "tensor '\(entry.name)': this writer stores F32, F16 or BF16, not \(entry.type.name)")
      }
      guard (1...4).contains(entry.shape.count), entry.shape.allSatisfy({ $0 > 0 }) else {
        throw FormatError.invalid(
          file: path,
          message: "tensor '\(entry.name)' has shape \(entry.shape); GGUF needs 1 to 4 positive dimensions")
      }
    }
  }

  /// Arrays must hold elements of one type (nested arrays are checked recursively).
  private static func checkArray(_ value: GGUFValue, key: String, path: String, depth: Int) throws {
    guard case .array(let items) = value else { return }
    guard depth < 4 else {
      throw FormatError.invalid(file: path, message: "metadata '\(key)' nests arrays too deeply")
    }
    if let first = items.first {
      let tag = typeTag(first)
      guard items.allSatisfy({ typeTag($0) == tag }) else {
        throw FormatError.invalid(
          file: path, message: "metadata '\(key)' mixes element types; a GGUF array holds one type")
      }
    }
    for item in items { try checkArray(item, key: key, path: path, depth: depth + 1) }
  }

  /// GGUF's value type numbers (`gguf_type`).
  static func typeTag(_ value: GGUFValue) -> Int {
    switch value {
    case .uint8: return 0
    case .int8: return 1
    case .uint16: return 2
    case .int16: return 3
    case .uint32: return 4
    case .int32: return 5
    case .float32: return 6
    case .bool: return 7
    case .string: return 8
    case .array: return 9
    case .uint64: return 10
    case .int64: return 11
    case .float64: return 12
    }
  }

  private static func encode(_ value: GGUFValue, into out: inout ByteWriter) {
    switch value {
    case .uint8(let v): out.append(v)
    case .int8(let v): out.append(v)
    case .uint16(let v): out.append(v)
    case .int16(let v): out.append(v)
    case .uint32(let v): out.append(v)
    case .int32(let v): out.append(v)
    case .uint64(let v): out.append(v)
    case .int64(let v): out.append(v)
    case .float32(let v): out.append(v.bitPattern)
    case .float64(let v): out.append(v.bitPattern)
    case .bool(let v): out.append(UInt8(v ? 1 : 0))
    case .string(let s): out.append(string: s)
    case .array(let items):
      // An empty array has no element to take a type from; strings are as good as any.
      out.append(UInt32(items.first.map(typeTag) ?? 8))
      out.append(UInt64(items.count))
      for item in items { encode(item, into: &out) }
    }
  }
}

/// Little-endian bytes, appended.
struct ByteWriter {
  var bytes: [UInt8] = []

  mutating func append(_ raw: [UInt8]) { bytes += raw }

  mutating func append<T: FixedWidthInteger>(_ value: T) {
    var v = value.littleEndian
    for _ in 0..<MemoryLayout<T>.size {
      bytes.append(UInt8(truncatingIfNeeded: v))
      v >>= 8
    }
  }

  /// A GGUF string: UInt64 byte length, then UTF-8 bytes.
  mutating func append(string: String) {
    append(UInt64(string.utf8.count))
    bytes += Array(string.utf8)
  }

  mutating func pad(to alignment: Int) {
    while bytes.count % alignment != 0 { bytes.append(0) }
  }
}
