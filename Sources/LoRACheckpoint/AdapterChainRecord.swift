import Foundation
import LoRAModel

/// `chain.json` in a tree node's output folder: its ancestors, root first, each with its
/// output folder and the fingerprint of its adapter when the node started. A node resumed
/// over an ancestor that changed since is refused with both fingerprints.
public struct AdapterChainRecord: Codable, Equatable, Sendable {
  public struct Link: Codable, Equatable, Sendable {
    public var name: String
    /// The ancestor's output folder (a PEFT folder once it finished).
    public var output: String
    /// "sha256:" + the hex SHA-256 of its `adapter_model.safetensors` (nil before it is read).
    public var fingerprint: String?

    public init(name: String, output: String, fingerprint: String? = nil) {
      (self.name, self.output, self.fingerprint) = (name, output, fingerprint)
    }
  }

  public static let fileName = "chain.json"
  /// The node's name.
  public var node: String?
  public var ancestors: [Link]

  /// `chain` with each ancestor's fingerprint read from its finished adapter.
  /// - Throws: `AdapterChainError` naming an ancestor with no adapter in its output folder.
  public static func reading(_ chain: [Link], node: String) throws -> AdapterChainRecord {
    AdapterChainRecord(
      node: node,
      ancestors: try chain.map { link in
        let file = URL(fileURLWithPath: link.output).appendingPathComponent("adapter_model.safetensors")
        guard let bytes = FileManager.default.contents(atPath: file.path) else {
          throw AdapterChainError(
            "'\(node)' is built on '\(link.name)', which has no finished adapter at \(file.path); "
              + "train '\(link.name)' first (the job runs parents before their children)")
        }
        var filled = link
        filled.fingerprint = BaseFingerprint.sha256([UInt8](bytes))
        return filled
      })
  }

  /// The ancestors' adapters, root first, read from their output folders (PEFT).
  public func loadAncestors(model: LlamaConfig) throws -> [LoRAAdapter] {
    try ancestors.map { try LoRAAdapter.loadPEFT(from: $0.output, model: model) }
  }

  /// Throws unless `now` is the chain this record was started over.
  public func check(_ now: AdapterChainRecord, node: String) throws {
    guard ancestors.map(\.name) == now.ancestors.map(\.name) else {
      throw AdapterChainError(
        "'\(node)' was started over \(ancestors.map(\.name).joined(separator: " → ")) and is now built on "
          + "\(now.ancestors.map(\.name).joined(separator: " → ")); delete its output folder to train it afresh"
      )
    }
    for (then, current) in zip(ancestors, now.ancestors) where then.fingerprint != current.fingerprint {
      throw AdapterChainError(
        "ancestor '\(then.name)' of '\(node)' changed since '\(node)' started: its adapter had fingerprint "
          + "\(then.fingerprint ?? "none") and now has \(current.fingerprint ?? "none") (\(current.output)); "
          + "restore it, or delete \(node)'s output folder to train it afresh over the new one")
    }
  }
}

/// A tree node whose chain cannot be applied: an ancestor missing or changed.
public struct AdapterChainError: Error, CustomStringConvertible, Equatable {
  public var description: String
  public init(_ description: String) { self.description = description }
}

extension AdapterChainRecord {
  /// The `chain.json` that goes with the adapter at `path`: in the folder itself, or for a
  /// checkpoint file in `OUTPUT/checkpoints/`, in `OUTPUT`; nil for an adapter that is no
  /// tree node.
  public static func of(_ path: String) throws -> (record: AdapterChainRecord, file: String)? {
    let url = URL(fileURLWithPath: path)
    var isFolder: ObjCBool = false
    FileManager.default.fileExists(atPath: path, isDirectory: &isFolder)
    let folder = isFolder.boolValue ? url : url.deletingLastPathComponent().deletingLastPathComponent()
    let file = folder.appendingPathComponent(fileName).path
    guard let data = FileManager.default.contents(atPath: file) else { return nil }
    do {
      return (try JSONDecoder().decode(AdapterChainRecord.self, from: data), file)
    } catch {
      throw AdapterChainError("\(file): not a chain record (\(error))")
    }
  }

  /// `node` (the adapter at `path`) with its recorded ancestors, as one flattened adapter
  /// (`AdapterChain.flatten`), or `node` itself when it is no tree node.
  /// - Returns: the adapter and the ancestors' names, root first (empty for no chain).
  /// - Throws: `AdapterChainError` when an ancestor is missing or changed since the node
  ///   trained over it (both fingerprints named).
  public static func applying(_ node: LoRAAdapter, at path: String, model: LlamaConfig) throws -> (
    adapter: LoRAAdapter, ancestors: [String]
  ) {
    guard let (ancestors, names) = try ancestors(of: path, model: model) else { return (node, []) }
    return (try AdapterChain.flatten(ancestors + [node], model: model), names)
  }

  /// The recorded ancestors of the adapter at `path`, root first, and their names; nil when it
  /// is no tree node.
  /// - Throws: `AdapterChainError` when an ancestor is missing or changed since the node
  ///   trained over it.
  public static func ancestors(of path: String, model: LlamaConfig) throws -> (
    adapters: [LoRAAdapter], names: [String]
  )? {
    guard let (record, file) = try of(path) else { return nil }
    let name = record.node ?? URL(fileURLWithPath: file).deletingLastPathComponent().lastPathComponent
    let now = try reading(record.ancestors.map { Link(name: $0.name, output: $0.output) }, node: name)
    try record.check(now, node: name)
    return (try now.loadAncestors(model: model), now.ancestors.map(\.name))
  }
}
