import Foundation
import LoRACheckpoint

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
  public var ancestors: [Link]

  /// `chain` with each ancestor's fingerprint read from its finished adapter.
  /// - Throws: `RunError` naming an ancestor with no adapter in its output folder.
  public static func reading(_ chain: [Link], node: String) throws -> AdapterChainRecord {
    AdapterChainRecord(
      ancestors: try chain.map { link in
        let file = URL(fileURLWithPath: link.output).appendingPathComponent("adapter_model.safetensors")
        guard let bytes = FileManager.default.contents(atPath: file.path) else {
          throw RunError(
            "'\(node)' is built on '\(link.name)', which has no finished adapter at \(file.path); "
              + "train '\(link.name)' first (the job runs parents before their children)")
        }
        var filled = link
        filled.fingerprint = BaseFingerprint.sha256([UInt8](bytes))
        return filled
      })
  }

  /// Throws unless `now` is the chain this record was started over.
  public func check(_ now: AdapterChainRecord, node: String) throws {
    guard ancestors.map(\.name) == now.ancestors.map(\.name) else {
      throw RunError(
        "'\(node)' was started over \(ancestors.map(\.name).joined(separator: " → ")) and is now built on "
          + "\(now.ancestors.map(\.name).joined(separator: " → ")); delete its output folder to train it afresh"
      )
    }
    for (then, current) in zip(ancestors, now.ancestors) where then.fingerprint != current.fingerprint {
      throw RunError(
        "ancestor '\(then.name)' of '\(node)' changed since '\(node)' started: its adapter had fingerprint "
          + "\(then.fingerprint ?? "none") and now has \(current.fingerprint ?? "none") (\(current.output)); "
          + "restore it, or delete \(node)'s output folder to train it afresh over the new one")
    }
  }
}
