import Foundation
import LoRAFormats
import LoRAKernels
import LoRAModel

/// Where an adapter belongs: the mean of the base model's last hidden state (the final
/// RMSNorm's output) over a sample of its training prompts. Each prompt contributes the mean
/// over its tokens, so long prompts do not outweigh short ones. The router compares a request
/// prompt's own mean with each adapter's signature by cosine similarity.
///
/// Stored beside the adapter as `route-signature.json` in its run folder.
public struct RouteSignature: Codable, Sendable, Equatable {
  public static let fileName = "route-signature.json"

  /// The base it was computed on.
  public var baseFingerprint: String
  /// How many prompts were averaged.
  public var prompts: Int
  /// [D]
  public var mean: [Float]

  public init(baseFingerprint: String, prompts: Int, mean: [Float]) {
    self.baseFingerprint = baseFingerprint
    self.prompts = prompts
    self.mean = mean
  }

  /// The mean final hidden state of `prompt` under the base alone: [D].
  public static func embed(_ prompt: [Int32], model: LlamaModel) -> [Float] {
    let d = model.config.hiddenSize
    guard !prompt.isEmpty else { return Array(repeating: 0, count: d) }
    let activations = LlamaActivations(
      config: model.config, batch: 1, length: prompt.count, keepForBackward: false)
    let hidden = model.forward(tokens: prompt, activations: activations).values
    var mean = [Float](repeating: 0, count: d)
    for t in 0..<prompt.count {
      for i in 0..<d { mean[i] += hidden[t * d + i] }
    }
    let n = Float(prompt.count)
    return mean.map { $0 / n }
  }

  /// The signature of `prompts` (each truncated to `maxTokens`).
  public static func compute(
    prompts: [[Int32]], model: LlamaModel, baseFingerprint: String, maxTokens: Int = 256
  ) -> RouteSignature {
    let d = model.config.hiddenSize
    var total = [Float](repeating: 0, count: d)
    var used = 0
    for prompt in prompts where !prompt.isEmpty {
      let e = embed(Array(prompt.prefix(maxTokens)), model: model)
      for i in 0..<d { total[i] += e[i] }
      used += 1
    }
    let n = Float(max(used, 1))
    return RouteSignature(baseFingerprint: baseFingerprint, prompts: used, mean: total.map { $0 / n })
  }

  /// cos(a, b); 0 when either is zero.
  public static func cosine(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count, "cosine of vectors of \(a.count) and \(b.count) values")
    var (dot, na, nb) = (Double(0), Double(0), Double(0))
    for i in a.indices {
      dot += Double(a[i]) * Double(b[i])
      na += Double(a[i]) * Double(a[i])
      nb += Double(b[i]) * Double(b[i])
    }
    guard na > 0 && nb > 0 else { return 0 }
    return Float(dot / (na.squareRoot() * nb.squareRoot()))
  }

  /// Writes the signature into `folder` atomically.
  public func save(in folder: String) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    let url = URL(fileURLWithPath: folder).appendingPathComponent(RouteSignature.fileName)
    let file = try AtomicFile(path: url.path, overwrite: true)
    try file.write(Array(try encoder.encode(self)))
    try file.commit()
  }

  /// The signature stored with the adapter at `path`: in the folder itself, or beside the
  /// file, or in the run folder above `checkpoints/`. Nil when there is none (or it is unreadable).
  public static func load(near path: String) -> RouteSignature? {
    var isFolder: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else { return nil }
    let url = URL(fileURLWithPath: path)
    let folder = isFolder.boolValue ? url : url.deletingLastPathComponent()
    for candidate in [folder, folder.deletingLastPathComponent()] {
      let file = candidate.appendingPathComponent(fileName)
      if let data = try? Data(contentsOf: file),
        let signature = try? JSONDecoder().decode(RouteSignature.self, from: data)
      {
        return signature
      }
      if isFolder.boolValue { break }
    }
    return nil
  }
}
