import Crypto
import Foundation
import LoRAFormats
import LoRAKernels
import LoRAModel

/// The identity of a base model: "sha256:" + the hex SHA-256 over, for each tensor in the
/// layout order, its Hugging Face name, its shape and its Float32 contents as loaded. Two
/// files give the same fingerprint exactly when the trainer sees the same weights.
///
/// Hashing a 135M-parameter model reads half a gigabyte, so the value is cached beside the
/// model (`MODEL.gguf.sld-fingerprint`, `FOLDER/.sld-fingerprint`), or under
/// `~/.cache/swift-lora-dist/fingerprints/` when that folder cannot be written, keyed by
/// the model files' sizes and modification times.
public enum BaseFingerprint {
  /// Hashes `weights` (no cache). The values hashed are the file's, in fp32, whatever
  /// precision the base is held in, so a bf16-held and an fp32-held base agree.
  public static func compute(_ weights: LlamaWeights) -> String {
    var hash = SHA256()
    let chunk = 1 << 20
    for (name, held) in weights.named {
      // Read again from the file when held in bf16; it was read at load, so it reads now.
      let tensor = held.f32 ?? (try? weights.fp32(name)) ?? held.widened()
      hash.update(data: Array("\(name)\n\(tensor.shape.map(String.init).joined(separator: ","))\n".utf8))
      var start = 0
      while start < tensor.count {
        let end = min(start + chunk, tensor.count)
        hash.update(data: tensor.bytes(.f32, range: start..<end))
        start = end
      }
    }
    return "sha256:" + hex(hash.finalize())
  }

  /// The fingerprint of `model` loaded from `files`, from the cache when the files have not
  /// changed since it was written; computes and caches it otherwise (a cache that cannot be
  /// written is skipped silently: it only saves time).
  public static func of(_ model: LlamaModel, files: ModelFiles) -> String {
    let key = fileKey(files)
    for url in cacheLocations(files) {
      if let data = try? Data(contentsOf: url),
        let cached = try? JSONDecoder().decode(Cached.self, from: data), cached.files == key
      {
        return cached.fingerprint
      }
    }
    let value = compute(model.weights)
    if let data = try? JSONEncoder().encode(Cached(fingerprint: value, files: key)) {
      for url in cacheLocations(files) {
        try? FileManager.default.createDirectory(
          at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        if (try? data.write(to: url, options: .atomic)) != nil { break }
      }
    }
    return value
  }

  /// "sha256:" + the hex SHA-256 of `bytes` (for data files and settings).
  public static func sha256(_ bytes: [UInt8]) -> String { "sha256:" + sha256Hex(bytes) }

  /// A short form for messages: the first 16 hex digits.
  public static func short(_ fingerprint: String) -> String {
    fingerprint.hasPrefix("sha256:") ? String(fingerprint.prefix(7 + 16)) : fingerprint
  }

  struct Cached: Codable {
    var fingerprint: String
    /// File name → "size:modification time".
    var files: [String: String]
  }

  static func fileKey(_ files: ModelFiles) -> [String: String] {
    var paths: [String] = []
    switch files {
    case .gguf(let gguf): paths = [gguf.path]
    case .huggingFace(let folder):
      let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
      paths = names.filter { $0.hasSuffix(".safetensors") || $0 == "config.json" }.sorted().map {
        URL(fileURLWithPath: folder).appendingPathComponent($0).path
      }
    }
    var key: [String: String] = [:]
    for path in paths {
      let attributes = try? FileManager.default.attributesOfItem(atPath: path)
      let size = (attributes?[.size] as? NSNumber)?.intValue ?? -1
      let modified = (attributes?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
      key[URL(fileURLWithPath: path).lastPathComponent] = "\(size):\(modified)"
    }
    return key
  }

  static func cacheLocations(_ files: ModelFiles) -> [URL] {
    let beside: URL
    switch files {
    case .gguf(let gguf): beside = URL(fileURLWithPath: gguf.path + ".sld-fingerprint")
    case .huggingFace(let folder):
      beside = URL(fileURLWithPath: folder).appendingPathComponent(".sld-fingerprint")
    }
    let home = FileManager.default.homeDirectoryForCurrentUser
    let name = hex(SHA256.hash(data: Array(URL(fileURLWithPath: files.path).standardizedFileURL.path.utf8)))
    let user = home.appendingPathComponent(".cache/swift-lora-dist/fingerprints/\(name.prefix(32)).json")
    return [beside, user]
  }
}
