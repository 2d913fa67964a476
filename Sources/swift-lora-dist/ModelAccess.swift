import Foundation
import LoRARun

/// Whether a rank can read a base model path, and what it looks like.
struct ModelAccess: Codable, Equatable {
  var path: String
  /// "GGUF v3", "safetensors", "Hugging Face folder" or "unrecognised file".
  var format: String?
  var bytes: Int?
  /// Why the model cannot be used, naming the path; nil when it can.
  var error: String?

  var summary: String {
    [format, bytes.map(formatBytes)].compactMap { $0 }.joined(separator: ", ")
  }

  /// Checks `path`: a GGUF or safetensors file, or a Hugging Face folder with
  /// `config.json` and at least one `.safetensors` file.
  static func check(_ path: String) -> ModelAccess {
    let files = FileManager.default
    var isFolder: ObjCBool = false
    guard files.fileExists(atPath: path, isDirectory: &isFolder) else {
      return ModelAccess(path: path, error: "model path \(path) does not exist")
    }
    if isFolder.boolValue {
      let config = (path as NSString).appendingPathComponent("config.json")
      guard files.isReadableFile(atPath: config) else {
        return ModelAccess(path: path, error: "model folder \(path) has no readable config.json")
      }
      let weights = ((try? files.contentsOfDirectory(atPath: path)) ?? []).filter {
        $0.hasSuffix(".safetensors")
      }
      guard !weights.isEmpty else {
        return ModelAccess(path: path, error: "model folder \(path) has no .safetensors files")
      }
      let total = weights.reduce(0) { sum, name in
        let attributes = try? files.attributesOfItem(atPath: (path as NSString).appendingPathComponent(name))
        return sum + ((attributes?[.size] as? NSNumber)?.intValue ?? 0)
      }
      return ModelAccess(path: path, format: "Hugging Face folder", bytes: total)
    }
    guard let handle = FileHandle(forReadingAtPath: path) else {
      return ModelAccess(path: path, error: "model file \(path) is not readable (permission denied?)")
    }
    defer { try? handle.close() }
    let size = ((try? files.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue
    let head = (try? handle.read(upToCount: 8)).map { [UInt8]($0) } ?? []
    guard head.count == 8 else {
      return ModelAccess(
        path: path, bytes: size, error: "model file \(path) is shorter than any model header")
    }
    if head[0..<4] == [0x47, 0x47, 0x55, 0x46] {  // "GGUF"
      let version = UInt32(head[4]) | UInt32(head[5]) << 8 | UInt32(head[6]) << 16 | UInt32(head[7]) << 24
      return ModelAccess(path: path, format: "GGUF v\(version)", bytes: size)
    }
    if path.hasSuffix(".safetensors") {
      return ModelAccess(path: path, format: "safetensors", bytes: size)
    }
    return ModelAccess(
      path: path, format: "unrecognised file", bytes: size,
      error: "model file \(path) is neither GGUF (no 'GGUF' magic) nor safetensors")
  }
}
