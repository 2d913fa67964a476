import Foundation
import LoRACheckpoint
import LoRAFormats
import LoRAKernels
import LoRAModel

@testable import LoRAServe

/// A temporary copy of a tiny fixture model (fingerprint caches land beside it, not in the
/// repository), adapters saved in every format, and a store over them.
final class ServeFixture {
  let folder: URL
  let modelPath: String
  let files: ModelFiles
  let model: LlamaModel
  let fingerprint: String

  init(_ fixture: String = "tiny-qwen2") throws {
    folder = FileManager.default.temporaryDirectory.appendingPathComponent(
      "sld-serve-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    let copy = folder.appendingPathComponent(fixture)
    try FileManager.default.copyItem(at: URL(fileURLWithPath: Fixtures.path(fixture)), to: copy)
    modelPath = copy.path
    files = try ModelFiles.open(modelPath)
    model = try LlamaModel.load(files).model
    fingerprint = BaseFingerprint.of(model, files: files)
  }

  deinit { try? FileManager.default.removeItem(at: folder) }

  /// An adapter with random B (so it changes the output), seeded.
  func adapter(_ config: LoRAConfig, seed: UInt64) throws -> LoRAAdapter {
    let adapter = try LoRAAdapter(config: config, model: model.config, seed: seed)
    var random = SeededRandom(seed: seed &+ 1000)
    for m in adapter.modules { for j in 0..<m.b.count { m.b[j] = (random.nextUnitFloat() - 0.5) * 0.6 } }
    // DoRA: magnitudes off ‖W0 + s·B·A‖, so that each row is rescaled.
    model.resetMagnitudes(of: adapter)
    for m in adapter.modules {
      guard let magnitude = m.magnitude else { continue }
      for j in 0..<magnitude.count { magnitude[j] *= 0.8 + 0.4 * random.nextUnitFloat() }
    }
    return adapter
  }

  /// Saves `adapter` as a checkpoint for this base (or for `fingerprint`); returns its path.
  @discardableResult
  func checkpoint(_ adapter: LoRAAdapter, _ name: String, fingerprint: String? = nil) throws -> String {
    let path = folder.appendingPathComponent("\(name).sldckpt").path
    try adapter.saveWeightsCheckpoint(
      to: path,
      base: .init(fingerprint: fingerprint ?? self.fingerprint, source: "tiny", config: model.config))
    return path
  }

  func peft(_ adapter: LoRAAdapter, _ name: String) throws -> String {
    let path = folder.appendingPathComponent(name).path
    try adapter.savePEFT(to: path, baseModel: "tiny")
    return path
  }

  func store(budgetBytes: Int? = nil) -> AdapterStore {
    AdapterStore(model: model, files: files, baseName: "tiny", budgetBytes: budgetBytes)
  }

  static let configs = [
    LoRAConfig(r: 2, loraAlpha: 4, targetModules: ["all-linear"]),
    LoRAConfig(r: 4, loraAlpha: 8, targetModules: ["q_proj", "v_proj"]),
    LoRAConfig(r: 3, loraAlpha: 3, targetModules: ["down_proj", "k_proj"]),
  ]
}
