import LoRAKernels

/// One tensor's entry in a GGUF file's table.
public struct GGUFTensorInfo: Sendable, Equatable {
  public var name: String
  /// Dimensions as ggml orders them: `dimensions[0]` is the innermost (a row's length).
  public var dimensions: [Int]
  /// The element type, or nil for a type this reader cannot dequantize (see `rawType`).
  public var type: GGMLType?
  public var rawType: UInt32
  /// Offset of the data from the start of the data section.
  public var offset: Int

  /// Row-major shape, outermost first (the reverse of `dimensions`): a linear layer's
  /// weight is `[out, in]`, as in PyTorch.
  public var shape: [Int] { dimensions.reversed() }
  public var elementCount: Int { dimensions.reduce(1, *) }
  public var typeName: String { type?.name ?? GGMLType.unsupportedName(rawType) }
}

/// A GGUF file (versions 2 and 3, little-endian): metadata, tensor table and memory-mapped
/// tensor data.
public final class GGUFFile: @unchecked Sendable {
  public let path: String
  public let version: Int
  public let metadata: [String: GGUFValue]
  /// Metadata keys in file order.
  public let metadataKeys: [String]
  public let tensors: [GGUFTensorInfo]
  public let alignment: Int
  /// Byte offset of the data section in the file.
  public let dataOffset: Int
  let file: MappedFile
  private let index: [String: Int]

  public init(path: String) throws {
    let file = try MappedFile(path: path)
    self.file = file
    self.path = path
    var reader = ByteReader(file)
    let magic = try reader.readBytes(4, "the GGUF magic")
    guard magic == Array("GGUF".utf8) else {
      let shown = magic.map { (32..<127).contains($0) ? String(UnicodeScalar($0)) : "." }.joined()
      throw FormatError.invalid(
        file: path, message: "not a GGUF file: it starts with '\(shown)', expected 'GGUF'")
    }
    let version = try reader.read(UInt32.self, "the GGUF version")
    if version == 0x0300_0000 || version == 0x0200_0000 {
      throw FormatError.unsupported(file: path, message: "big-endian GGUF; convert it to little-endian")
    }
    guard version == 2 || version == 3 else {
      throw FormatError.unsupported(
        file: path, message: "GGUF version \(version); this reader supports versions 2 and 3")
    }
    self.version = Int(version)
    let tensorCount = try reader.read(UInt64.self, "the tensor count")
    let metadataCount = try reader.read(UInt64.self, "the metadata count")
    // Each metadata entry takes at least 12 bytes, each tensor entry at least 24.
    guard metadataCount <= UInt64(reader.remaining / 12), tensorCount <= UInt64(reader.remaining / 24) else {
      throw FormatError.truncated(
        file: path, what: "the header (\(metadataCount) metadata entries, \(tensorCount) tensors declared)",
        offset: reader.offset)
    }

    var metadata: [String: GGUFValue] = [:]
    var keys: [String] = []
    for i in 0..<Int(metadataCount) {
      let key = try GGUFFile.readString(&reader, "metadata key \(i)")
      let type = try reader.read(UInt32.self, "the type of metadata '\(key)'")
      metadata[key] = try GGUFFile.readValue(&reader, type: type, key: key, depth: 0)
      keys.append(key)
    }
    self.metadata = metadata
    self.metadataKeys = keys

    var alignment = 32
    if let value = metadata["general.alignment"] {
      guard let a = value.int, a > 0, a & (a - 1) == 0 else {
        throw FormatError.invalid(
          file: path, message: "general.alignment is \(value.summary), expected a power of two")
      }
      alignment = a
    }
    self.alignment = alignment

    var tensors: [GGUFTensorInfo] = []
    var index: [String: Int] = [:]
    for i in 0..<Int(tensorCount) {
      let name = try GGUFFile.readString(&reader, "the name of tensor \(i)")
      let rank = try reader.read(UInt32.self, "the rank of tensor '\(name)'")
      guard (1...4).contains(rank) else {
        throw FormatError.invalid(
          file: path, message: "tensor '\(name)' has \(rank) dimensions, expected 1 to 4")
      }
      var dimensions: [Int] = []
      for d in 0..<Int(rank) {
        let size = try reader.read(UInt64.self, "dimension \(d) of tensor '\(name)'")
        guard size > 0, size < 1 << 40 else {
          throw FormatError.invalid(
            file: path, message: "tensor '\(name)' has dimension \(d) of size \(size)")
        }
        dimensions.append(Int(size))
      }
      // Each size is bounded; their product must be too (a crafted table overflows it).
      var elements = 1
      for size in dimensions {
        let (product, overflow) = elements.multipliedReportingOverflow(by: size)
        guard !overflow, product < 1 << 48 else {
          throw FormatError.invalid(
            file: path,
            message: "tensor '\(name)' has dimensions \(dimensions): more elements than any file holds")
        }
        elements = product
      }
      let rawType = try reader.read(UInt32.self, "the type of tensor '\(name)'")
      let offset = try reader.read(UInt64.self, "the data offset of tensor '\(name)'")
      guard offset < 1 << 50 else {
        throw FormatError.invalid(file: path, message: "tensor '\(name)' has data offset \(offset)")
      }
      guard index[name] == nil else {
        throw FormatError.invalid(file: path, message: "tensor '\(name)' appears twice in the tensor table")
      }
      index[name] = tensors.count
      tensors.append(
        GGUFTensorInfo(
          name: name, dimensions: dimensions, type: GGMLType(rawValue: rawType), rawType: rawType,
          offset: Int(offset)))
    }
    self.tensors = tensors
    self.index = index
    self.dataOffset = (reader.offset + alignment - 1) / alignment * alignment

    for tensor in tensors {
      guard tensor.offset % alignment == 0 else {
        throw FormatError.invalid(
          file: path,
          message: "tensor '\(tensor.name)' data offset \(tensor.offset) is not aligned to \(alignment)")
      }
      guard let type = tensor.type else { continue }
      guard let bytes = type.byteCount(elements: tensor.elementCount),
        tensor.dimensions[0] % type.blockElements == 0
      else {
        throw FormatError.invalid(
          file: path,
          message:
            "tensor '\(tensor.name)' of type \(type.name) has rows of \(tensor.dimensions[0]) elements, "
            + "not a multiple of its block size \(type.blockElements)")
      }
      let end = dataOffset + tensor.offset + bytes
      guard end <= file.size else {
        throw FormatError.truncated(
          file: path, what: "the data of tensor '\(tensor.name)' (\(bytes) bytes, ending at byte \(end))",
          offset: file.size)
      }
    }
  }

  /// The table entry of tensor `name`, if the file has it.
  public func info(_ name: String) -> GGUFTensorInfo? { index[name].map { tensors[$0] } }

  /// Size of the file in bytes.
  public var fileSize: Int { file.size }

  /// Tensor `name` as Float32 with its row-major `shape`. F32 data is used in place from the
  /// memory map (the tensor must not be written); other types are dequantized into new memory.
  public func tensor(_ name: String) throws -> Tensor {
    guard let info = info(name) else {
      throw FormatError.invalid(file: path, message: "has no tensor named '\(name)'")
    }
    guard let type = info.type else {
      throw FormatError.unsupported(
        file: path, message: "tensor '\(name)' has type \(info.typeName), which this reader cannot dequantize"
      )
    }
    let start = file.base + dataOffset + info.offset
    if type == .f32 && Int(bitPattern: start) % MemoryLayout<Float>.alignment == 0 {
      let floats = UnsafeMutableRawPointer(mutating: start).assumingMemoryBound(to: Float.self)
      return Tensor(external: floats, shape: info.shape, owner: file)
    }
    let result = Tensor(zeros: info.shape)
    try dequantize(name, into: result)
    return result
  }

  /// Tensor `name` used in place from the memory map when the file stores it as BF16 (the
  /// tensor must not be written), else nil.
  public func bf16Tensor(_ name: String) -> BF16Tensor? {
    guard let info = info(name), info.type == .bf16 else { return nil }
    let start = file.base + dataOffset + info.offset
    guard Int(bitPattern: start) % MemoryLayout<UInt16>.alignment == 0 else { return nil }
    let elements = UnsafeMutableRawPointer(mutating: start).assumingMemoryBound(to: UInt16.self)
    return BF16Tensor(external: elements, shape: info.shape, owner: file)
  }

  /// Drops this process's resident pages of tensor `name`'s data (after it was converted
  /// into memory of its own); a later read maps them back.
  public func releasePages(_ name: String) {
    guard let info = info(name), let bytes = info.type?.byteCount(elements: info.elementCount) else { return }
    file.releasePages(offset: dataOffset + info.offset, count: bytes)
  }

  /// Dequantizes tensor `name` into `destination`, which must have its element count.
  public func dequantize(_ name: String, into destination: Tensor) throws {
    guard let info = info(name) else {
      throw FormatError.invalid(file: path, message: "has no tensor named '\(name)'")
    }
    guard let type = info.type else {
      throw FormatError.unsupported(
        file: path, message: "tensor '\(name)' has type \(info.typeName), which this reader cannot dequantize"
      )
    }
    guard destination.count == info.elementCount else {
      throw FormatError.invalid(
        file: path,
        message: "tensor '\(name)' has \(info.elementCount) elements, expected \(destination.count)")
    }
    let start = file.base + dataOffset + info.offset
    destination.withUnsafeMutableBufferPointer { out in
      Dequantize.run(type, from: start, count: info.elementCount, into: out.baseAddress!)
    }
  }

  private static func readString(_ reader: inout ByteReader, _ what: @autoclosure () -> String) throws
    -> String
  {
    let length = try reader.read(UInt64.self, "the length of \(what())")
    guard length <= UInt64(reader.remaining) else {
      throw FormatError.truncated(
        file: reader.file.path, what: "\(what()) (\(length) bytes declared)", offset: reader.offset)
    }
    return String(decoding: try reader.readBytes(Int(length), what()), as: UTF8.self)
  }

  private static func readValue(_ reader: inout ByteReader, type: UInt32, key: String, depth: Int) throws
    -> GGUFValue
  {
    let what = "the value of metadata '\(key)'"
    switch type {
    case 0: return .uint8(try reader.read(UInt8.self, what))
    case 1: return .int8(try reader.read(Int8.self, what))
    case 2: return .uint16(try reader.read(UInt16.self, what))
    case 3: return .int16(try reader.read(Int16.self, what))
    case 4: return .uint32(try reader.read(UInt32.self, what))
    case 5: return .int32(try reader.read(Int32.self, what))
    case 6: return .float32(try reader.readFloat(what))
    case 7:
      let byte = try reader.read(UInt8.self, what)
      guard byte <= 1 else {
        throw FormatError.invalid(file: reader.file.path, message: "metadata '\(key)' has bool value \(byte)")
      }
      return .bool(byte == 1)
    case 8: return .string(try readString(&reader, what))
    case 9:
      guard depth < 4 else {
        throw FormatError.invalid(
          file: reader.file.path, message: "metadata '\(key)' nests arrays too deeply")
      }
      let elementType = try reader.read(UInt32.self, "the element type of metadata '\(key)'")
      let count = try reader.read(UInt64.self, "the length of metadata '\(key)'")
      guard count <= UInt64(reader.remaining) else {
        throw FormatError.truncated(
          file: reader.file.path, what: "metadata '\(key)' (\(count) elements declared)",
          offset: reader.offset)
      }
      var values: [GGUFValue] = []
      values.reserveCapacity(Int(count))
      for _ in 0..<Int(count) {
        values.append(try readValue(&reader, type: elementType, key: key, depth: depth + 1))
      }
      return .array(values)
    case 10: return .uint64(try reader.read(UInt64.self, what))
    case 11: return .int64(try reader.read(Int64.self, what))
    case 12: return .float64(try reader.readDouble(what))
    default:
      throw FormatError.invalid(
        file: reader.file.path, message: "metadata '\(key)' has unknown value type \(type)")
    }
  }
}
