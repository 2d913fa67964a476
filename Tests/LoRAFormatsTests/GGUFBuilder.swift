import Foundation

/// Writes small GGUF files byte by byte, for tests of the reader's error paths.
struct GGUFBuilder {
  enum Value {
    case u32(UInt32)
    case f32(Float)
    case string(String)
    case strings([String])
    case floats([Float])
    case int32s([Int32])
    case bool(Bool)
  }
  struct TensorEntry {
    var name: String
    var dimensions: [UInt64]
    var type: UInt32
    var data: [UInt8]
  }

  var version: UInt32 = 3
  var metadata: [(String, Value)] = []
  var tensors: [TensorEntry] = []
  var alignment = 32

  mutating func addF32(_ name: String, dimensions: [UInt64], values: [Float]) {
    tensors.append(
      TensorEntry(name: name, dimensions: dimensions, type: 0, data: values.flatMap { le($0.bitPattern) }))
  }

  func build() -> [UInt8] {
    var out: [UInt8] =
      Array("GGUF".utf8) + le(version) + le(UInt64(tensors.count)) + le(UInt64(metadata.count))
    for (key, value) in metadata {
      out += string(key)
      switch value {
      case .u32(let v): out += le(UInt32(4)) + le(v)
      case .f32(let v): out += le(UInt32(6)) + le(v.bitPattern)
      case .string(let s): out += le(UInt32(8)) + string(s)
      case .bool(let b): out += le(UInt32(7)) + [b ? 1 : 0]
      case .strings(let list):
        out += le(UInt32(9)) + le(UInt32(8)) + le(UInt64(list.count))
        for s in list { out += string(s) }
      case .floats(let list):
        out += le(UInt32(9)) + le(UInt32(6)) + le(UInt64(list.count)) + list.flatMap { le($0.bitPattern) }
      case .int32s(let list):
        out += le(UInt32(9)) + le(UInt32(5)) + le(UInt64(list.count)) + list.flatMap { le($0) }
      }
    }
    var offsets: [UInt64] = []
    var offset: UInt64 = 0
    for t in tensors {
      offsets.append(offset)
      offset += UInt64((t.data.count + alignment - 1) / alignment * alignment)
    }
    for (t, o) in zip(tensors, offsets) {
      out += string(t.name) + le(UInt32(t.dimensions.count))
      for d in t.dimensions { out += le(d) }
      out += le(t.type) + le(o)
    }
    while out.count % alignment != 0 { out.append(0) }
    for t in tensors {
      out += t.data
      while out.count % alignment != 0 { out.append(0) }
    }
    return out
  }

  func write(to path: String) throws {
    try Data(build()).write(to: URL(fileURLWithPath: path))
  }

  private func string(_ s: String) -> [UInt8] { le(UInt64(s.utf8.count)) + Array(s.utf8) }
}

func le<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
  withUnsafeBytes(of: value.littleEndian) { Array($0) }
}

/// A temporary folder removed when the value is released.
final class GGUFTestFolder {
  let path: String
  init() throws {
    path = NSTemporaryDirectory() + "lora-formats-test-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
  }
  deinit { try? FileManager.default.removeItem(atPath: path) }
  func file(_ name: String, _ bytes: [UInt8]) throws -> String {
    let file = path + "/" + name
    try Data(bytes).write(to: URL(fileURLWithPath: file))
    return file
  }
}
