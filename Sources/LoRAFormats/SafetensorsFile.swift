import Foundation
import LoRAKernels

/// One tensor's entry in a safetensors header.
public struct SafetensorsTensorInfo: Sendable, Equatable {
  public var name: String
  /// "F32", "F16" or "BF16" (others are listed but cannot be loaded).
  public var dtype: String
  /// Row-major shape, as PyTorch has it.
  public var shape: [Int]
  /// Byte range within the data section.
  public var begin: Int
  public var end: Int
  public var elementCount: Int { shape.reduce(1, *) }
}

/// A `.safetensors` file: an 8-byte header length, a JSON header, then raw tensor data,
/// memory-mapped.
public final class SafetensorsFile: @unchecked Sendable {
  public let path: String
  public let tensors: [String: SafetensorsTensorInfo]
  /// The header's `__metadata__` strings.
  public let metadata: [String: String]
  let file: MappedFile
  let dataOffset: Int

  public init(path: String) throws {
    let file = try MappedFile(path: path)
    self.file = file
    self.path = path
    var reader = ByteReader(file)
    let headerLength = try reader.read(UInt64.self, "the safetensors header length")
    guard headerLength <= UInt64(reader.remaining), headerLength <= 100 << 20 else {
      throw FormatError.truncated(
        file: path, what: "the safetensors header (\(headerLength) bytes declared)", offset: reader.offset)
    }
    let headerBytes = try reader.readBytes(Int(headerLength), "the safetensors header")
    dataOffset = reader.offset
    guard let header = try? JSONSerialization.jsonObject(with: Data(headerBytes)) as? [String: Any] else {
      throw FormatError.invalid(file: path, message: "the safetensors header is not a JSON object")
    }
    var tensors: [String: SafetensorsTensorInfo] = [:]
    var metadata: [String: String] = [:]
    let dataSize = file.size - dataOffset
    for (name, value) in header {
      if name == "__metadata__" {
        for (k, v) in value as? [String: Any] ?? [:] { metadata[k] = v as? String ?? "\(v)" }
        continue
      }
      guard let entry = value as? [String: Any], let dtype = entry["dtype"] as? String,
        let shape = entry["shape"] as? [Int], let offsets = entry["data_offsets"] as? [Int],
        offsets.count == 2
      else {
        throw FormatError.invalid(
          file: path, message: "header entry '\(name)' needs dtype, shape and two data_offsets")
      }
      let info = SafetensorsTensorInfo(
        name: name, dtype: dtype, shape: shape, begin: offsets[0], end: offsets[1])
      // The element count must not overflow (a crafted header's shape can): bounded like any file.
      let elements = shape.reduce((1, false)) { product, size in
        let (next, overflow) = product.0.multipliedReportingOverflow(by: max(size, 0))
        return (next, product.1 || overflow || next >= 1 << 48)
      }
      guard shape.allSatisfy({ $0 >= 0 }), !elements.1, info.begin >= 0, info.begin <= info.end else {
        throw FormatError.invalid(
          file: path, message: "tensor '\(name)' has shape \(shape) and offsets \(offsets)")
      }
      guard info.end <= dataSize else {
        throw FormatError.truncated(
          file: path, what: "the data of tensor '\(name)' (ending at data byte \(info.end))",
          offset: file.size)
      }
      if let width = SafetensorsFile.elementBytes[dtype], info.end - info.begin != info.elementCount * width {
        throw FormatError.invalid(
          file: path,
          message:
            "tensor '\(name)' of shape \(shape) and dtype \(dtype) needs \(info.elementCount * width) bytes, "
            + "its offsets span \(info.end - info.begin)")
      }
      tensors[name] = info
    }
    self.tensors = tensors
    self.metadata = metadata
  }

  private static let elementBytes = ["F32": 4, "F16": 2, "BF16": 2]

  /// Tensor `name` as Float32. F32 data aligned in the file is used in place (read-only);
  /// F16 and BF16 are converted into new memory.
  public func tensor(_ name: String) throws -> Tensor {
    guard let info = tensors[name] else {
      throw FormatError.invalid(file: path, message: "has no tensor named '\(name)'")
    }
    let type: GGMLType
    switch info.dtype {
    case "F32": type = .f32
    case "F16": type = .f16
    case "BF16": type = .bf16
    default:
      throw FormatError.unsupported(
        file: path, message: "tensor '\(name)' has dtype \(info.dtype); F32, F16 and BF16 can be loaded")
    }
    let start = file.base + dataOffset + info.begin
    if type == .f32 && Int(bitPattern: start) % MemoryLayout<Float>.alignment == 0 {
      let floats = UnsafeMutableRawPointer(mutating: start).assumingMemoryBound(to: Float.self)
      return Tensor(external: floats, shape: info.shape, owner: file)
    }
    let result = Tensor(zeros: info.shape)
    result.withUnsafeMutableBufferPointer { out in
      Dequantize.run(type, from: start, count: info.elementCount, into: out.baseAddress!)
    }
    return result
  }

  /// Tensor `name` used in place from the memory map when stored as BF16 (read-only), else nil.
  public func bf16Tensor(_ name: String) -> BF16Tensor? {
    guard let info = tensors[name], info.dtype == "BF16" else { return nil }
    let start = file.base + dataOffset + info.begin
    guard Int(bitPattern: start) % MemoryLayout<UInt16>.alignment == 0 else { return nil }
    let elements = UnsafeMutableRawPointer(mutating: start).assumingMemoryBound(to: UInt16.self)
    return BF16Tensor(external: elements, shape: info.shape, owner: file)
  }

  /// Drops this process's resident pages of tensor `name`'s data (see `MappedFile.releasePages`).
  public func releasePages(_ name: String) {
    guard let info = tensors[name] else { return }
    file.releasePages(offset: dataOffset + info.begin, count: info.end - info.begin)
  }
}

/// The weights of a Hugging Face model folder: `model.safetensors`, or the shards named by
/// `model.safetensors.index.json`.
public final class SafetensorsCollection: @unchecked Sendable {
  public let folder: String
  public let files: [SafetensorsFile]
  private let owner: [String: Int]

  public init(folder: String) throws {
    self.folder = folder
    let index = (folder as NSString).appendingPathComponent("model.safetensors.index.json")
    let single = (folder as NSString).appendingPathComponent("model.safetensors")
    var names: [String] = []
    if FileManager.default.fileExists(atPath: index) {
      guard let data = FileManager.default.contents(atPath: index),
        let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
        let map = json["weight_map"] as? [String: String]
      else {
        throw FormatError.invalid(
          file: index, message: "expected a JSON object with a 'weight_map' of tensor → file")
      }
      names = Array(Set(map.values)).sorted()
    } else if FileManager.default.fileExists(atPath: single) {
      names = ["model.safetensors"]
    } else {
      throw FormatError.unreadable(
        file: folder, reason: "no model.safetensors or model.safetensors.index.json in the folder")
    }
    files = try names.map { try SafetensorsFile(path: (folder as NSString).appendingPathComponent($0)) }
    var owner: [String: Int] = [:]
    for (i, file) in files.enumerated() {
      for name in file.tensors.keys {
        if let other = owner[name] {
          throw FormatError.invalid(
            file: file.path, message: "tensor '\(name)' is also in \(files[other].path)")
        }
        owner[name] = i
      }
    }
    self.owner = owner
  }

  public var tensorNames: [String] { owner.keys.sorted() }

  public func info(_ name: String) -> SafetensorsTensorInfo? {
    owner[name].flatMap { files[$0].tensors[name] }
  }

  /// Tensor `name` in place when stored as BF16, else nil.
  public func bf16Tensor(_ name: String) -> BF16Tensor? { owner[name].flatMap { files[$0].bf16Tensor(name) } }

  /// Drops this process's resident pages of tensor `name`'s data.
  public func releasePages(_ name: String) { owner[name].map { files[$0].releasePages(name) } }

  public func tensor(_ name: String) throws -> Tensor {
    guard let i = owner[name] else {
      throw FormatError.invalid(
        file: folder, message: "no safetensors file in the folder holds tensor '\(name)'")
    }
    return try files[i].tensor(name)
  }
}
