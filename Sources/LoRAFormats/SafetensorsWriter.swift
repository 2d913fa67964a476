import Foundation
import LoRAKernels

/// Writes `.safetensors` files as the Hugging Face `safetensors` library does: an 8-byte
/// little-endian header length, a JSON header padded with spaces to a multiple of 8 bytes,
/// then the tensors' bytes in header order.
public enum SafetensorsWriter {
  /// The element type a tensor is stored as.
  public enum DType: String, Sendable {
    case f32 = "F32"
    case f16 = "F16"
    case bf16 = "BF16"
  }

  /// Writes `tensors` (name, tensor, stored type) to `path`, atomically: a temporary file
  /// in the same folder is renamed over `path` only once complete.
  public static func write(
    _ tensors: [(name: String, tensor: Tensor, dtype: DType)], metadata: [String: String] = [:],
    to path: String
  ) throws {
    var header: [String: Any] = [:]
    if !metadata.isEmpty { header["__metadata__"] = metadata }
    var offset = 0
    var payload: [[UInt8]] = []
    for (name, tensor, dtype) in tensors.sorted(by: { $0.name < $1.name }) {
      let bytes = encode(tensor, dtype)
      header[name] = [
        "dtype": dtype.rawValue, "shape": tensor.shape, "data_offsets": [offset, offset + bytes.count],
      ]
      offset += bytes.count
      payload.append(bytes)
    }
    var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
    while (8 + json.count) % 8 != 0 { json.append(0x20) }
    var file = Data()
    file.reserveCapacity(8 + json.count + offset)
    withUnsafeBytes(of: UInt64(json.count).littleEndian) { file.append(contentsOf: $0) }
    file.append(json)
    for bytes in payload { file.append(contentsOf: bytes) }
    let url = URL(fileURLWithPath: path)
    do {
      try file.write(to: url, options: .atomic)
    } catch {
      throw FormatError.unreadable(file: path, reason: "cannot write: \(error.localizedDescription)")
    }
  }

  private static func encode(_ tensor: Tensor, _ dtype: DType) -> [UInt8] {
    let values = tensor.values
    var out: [UInt8] = []
    switch dtype {
    case .f32:
      out.reserveCapacity(values.count * 4)
      for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { out.append(contentsOf: $0) } }
    case .f16:
      out.reserveCapacity(values.count * 2)
      for v in values {
        withUnsafeBytes(of: Float16(v).bitPattern.littleEndian) { out.append(contentsOf: $0) }
      }
    case .bf16:
      out.reserveCapacity(values.count * 2)
      for v in values {
        // Round to nearest even, as PyTorch's `to(torch.bfloat16)` does (NaN stays NaN).
        let bits = v.bitPattern
        let rounded = v.isNaN ? (bits | 0x0040_0000) : bits &+ 0x7FFF &+ ((bits >> 16) & 1)
        withUnsafeBytes(of: UInt16(truncatingIfNeeded: rounded >> 16).littleEndian) {
          out.append(contentsOf: $0)
        }
      }
    }
    return out
  }
}
