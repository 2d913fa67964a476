import Foundation
import LoRAKernels
import LoRAModel

/// The adapter's side of a checkpoint: its module table, and rebuilding it from a file.
extension LoRAAdapter {
  /// The header's module table for this adapter's layout.
  public var checkpointModules: [CheckpointHeader.Module] {
    modules.map { m in
      CheckpointHeader.Module(
        name: m.name, rank: m.rank, alpha: m.alpha, scale: Double(m.scale), inFeatures: m.inFeatures,
        outFeatures: m.outFeatures, offset: m.offset)
    }
  }

  /// "alpha/r" or "alpha/sqrt(r)".
  public var scaleConvention: String { config.useRslora ? "alpha/sqrt(r)" : "alpha/r" }

  /// The adapter stored in `reader` (either kind), for the base configuration the header
  /// records. Its layout is rebuilt from the configuration and must equal the header's
  /// module table.
  public static func load(checkpoint reader: CheckpointReader) throws -> LoRAAdapter {
    let header = reader.header
    var config = header.adapter
    // PiSSA keeps its name: it lays out the frozen term the file holds.
    if config.pissa == nil { config.initialization = "zero" }
    let adapter: LoRAAdapter
    do {
      adapter = try LoRAAdapter(config: config, model: header.base.config, seed: 0)
    } catch {
      throw CheckpointError.mismatch(
        file: reader.path, reason: "its adapter configuration is invalid: \(error)")
    }
    let expectedConvention = config.useRslora ? "alpha/sqrt(r)" : "alpha/r"
    guard header.scaleConvention == expectedConvention else {
      throw CheckpointError.mismatch(
        file: reader.path,
        reason: "scale_convention \(header.scaleConvention) contradicts use_rslora \(config.useRslora)")
    }
    guard adapter.checkpointModules == header.modules else {
      throw CheckpointError.mismatch(
        file: reader.path, reason: "its module table does not match the layout its configuration gives")
    }
    try reader.read("lora", into: adapter.parameters)
    return adapter
  }

  /// Checks that `reader`'s adapter belongs on the base with `fingerprint` and `config`
  /// (unless `force`, which still requires the shapes to fit).
  public static func checkBase(
    of reader: CheckpointReader, fingerprint: String, config: LlamaConfig, force: Bool
  ) throws {
    let base = reader.header.base
    if base.fingerprint != fingerprint && !force {
      throw CheckpointError.wrongBase(
        file: reader.path, expected: "\(base.source) (\(BaseFingerprint.short(base.fingerprint)))",
        found: BaseFingerprint.short(fingerprint))
    }
    let a = base.config
    guard
      a.hiddenSize == config.hiddenSize && a.intermediateSize == config.intermediateSize
        && a.layers == config.layers && a.heads == config.heads && a.kvHeads == config.kvHeads
        && a.headSize == config.headSize
    else {
      throw CheckpointError.mismatch(
        file: reader.path,
        reason:
          "the adapter was made for a base with \(a.layers) layers of width \(a.hiddenSize) "
          + "(\(a.heads)/\(a.kvHeads) heads, MLP \(a.intermediateSize)); the loaded model has \(config.layers) "
          + "layers of width \(config.hiddenSize) (\(config.heads)/\(config.kvHeads) heads, MLP \(config.intermediateSize))"
      )
    }
  }
}

extension LoRAAdapter {
  /// Writes the adapter alone as a weights-only checkpoint at `path` (atomically), stored
  /// in `precision` (bf16/f16 say so in the header and the table). `training` may carry the
  /// source run's state for information. An existing file is refused unless `overwrite`.
  public func saveWeightsCheckpoint(
    to path: String, base: CheckpointHeader.Base, precision: Tensor.ByteEncoding = .f32,
    training: CheckpointHeader.Training? = nil, overwrite: Bool = false
  ) throws {
    let url = URL(fileURLWithPath: path)
    if FileManager.default.fileExists(atPath: url.path) && !overwrite {
      throw CheckpointError.writeFailed(
        path: url.path, reason: "the file exists; choose another output or pass --overwrite")
    }
    let header = CheckpointHeader(
      kind: .weights, created: ISO8601DateFormatter().string(from: Date()), adapter: config,
      scaleConvention: scaleConvention, modules: checkpointModules, base: base, precision: precision,
      training: training)
    let bytes = try CheckpointWriter.encode(
      header: header, tensors: [CheckpointTensorSource(name: "lora", tensor: parameters, dtype: precision)])
    do {
      try FileManager.default.createDirectory(
        at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
    } catch {
      throw CheckpointError.writeFailed(
        path: url.path, reason: "cannot create its folder: \(error.localizedDescription)")
    }
    try CheckpointWriter.writeAtomically(bytes, to: url)
  }
}
