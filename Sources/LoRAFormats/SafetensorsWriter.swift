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
    switch dtype {
    case .f32: return tensor.bytes(.f32)
    case .f16: return tensor.bytes(.f16)
    case .bf16: return tensor.bytes(.bf16)  // round to nearest even, as PyTorch's `to(torch.bfloat16)`
    }
  }
}
