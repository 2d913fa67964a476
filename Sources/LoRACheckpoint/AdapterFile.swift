import Foundation
import LoRAFormats
import LoRAModel

/// Every way an adapter reaches a command's `--adapter`: a PEFT folder, a GGUF LoRA file,
/// a native checkpoint file, or a run's output folder (its newest valid checkpoint).
public enum AdapterFile {
  public enum Kind: String, Sendable {
    case peft = "PEFT folder"
    case ggufLoRA = "GGUF LoRA"
    case checkpoint = "checkpoint"
  }

  /// What `path` holds, judged by its contents (nil: none of the kinds).
  public static func kind(of path: String) -> Kind? {
    var isFolder: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else { return nil }
    if isFolder.boolValue {
      // A training output folder holds both its final PEFT adapter and checkpoints/; the
      // checkpoint is preferred because it carries the base fingerprint.
      let url = URL(fileURLWithPath: path)
      if !CheckpointStore.list(url).isEmpty
        || !CheckpointStore.list(url.appendingPathComponent("checkpoints")).isEmpty
      {
        return .checkpoint
      }
      if FileManager.default.fileExists(atPath: url.appendingPathComponent("adapter_config.json").path) {
        return .peft
      }
      return nil
    }
    guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
    defer { try? handle.close() }
    let head = [UInt8]((try? handle.read(upToCount: 8)) ?? Data())
    if head == CheckpointFormat.magic { return .checkpoint }
    if head.count >= 4 && head[0..<4] == [0x47, 0x47, 0x55, 0x46] { return .ggufLoRA }  // "GGUF"
    return nil
  }

  /// Loads the adapter at `path` for `model` (loaded from `files`). A checkpoint's base
  /// fingerprint must match the model's unless `force`. A tree node (its folder holds
  /// `chain.json`) comes with its ancestors: one adapter whose ΔW is the whole chain's.
  ///
  /// - Returns: the adapter and a one-line description of where it came from.
  public static func load(_ path: String, model: LlamaModel, files: ModelFiles, force: Bool = false) throws
    -> (adapter: LoRAAdapter, description: String)
  {
    let (node, description) = try loadOwn(path, model: model, files: files, force: force)
    let (adapter, ancestors) = try AdapterChainRecord.applying(node, at: path, model: model.config)
    guard !ancestors.isEmpty else { return (node, description) }
    return (adapter, description + " over \(ancestors.joined(separator: " → ")) (its tree chain, flattened)")
  }

  /// The adapter at `path` alone (a tree node without its ancestors).
  public static func loadOwn(_ path: String, model: LlamaModel, files: ModelFiles, force: Bool = false) throws
    -> (adapter: LoRAAdapter, description: String)
  {
    switch kind(of: path) {
    case .peft:
      return (try LoRAAdapter.loadPEFT(from: path, model: model.config), "\(path) (PEFT)")
    case .ggufLoRA:
      return (try LoRAAdapter.loadGGUFLoRA(path: path, model: model.config), "\(path) (GGUF LoRA)")
    case .checkpoint:
      let (reader, _) = try CheckpointStore.newestValid(path)
      try LoRAAdapter.checkBase(
        of: reader, fingerprint: BaseFingerprint.of(model, files: files), config: model.config, force: force)
      let step = reader.header.training.map { ", update \($0.step)" } ?? ""
      // A PiSSA adapter as the plain one of rank 2r that every use takes.
      return (try LoRAAdapter.load(checkpoint: reader).plain(), "\(reader.path) (checkpoint\(step))")
    case nil:
      throw CheckpointError.noCheckpoint(
        path: path,
        reason:
          "is not an adapter: expected a PEFT folder (adapter_config.json), a GGUF LoRA file, a .sldckpt "
          + "checkpoint or a training output folder with checkpoints/")
    }
  }
}
