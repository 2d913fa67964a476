import LoRACheckpoint

/// Where and how often a run writes checkpoints: the one due check that single and fused
/// training share.
public struct CheckpointCadence {
  public var store: CheckpointStore
  /// Every this many updates (0: only after the last).
  public var every: Int
  /// The base model the adapter belongs to.
  public var base: CheckpointHeader.Base

  public init(store: CheckpointStore, every: Int, base: CheckpointHeader.Base) {
    self.store = store
    self.every = every
    self.base = base
  }

  /// Whether a checkpoint is due after update `step`: every `every` updates, after the
  /// `last`, and when training stops on request.
  public func isDue(after step: Int, last: Int, stopping: Bool) -> Bool {
    (every > 0 && step % every == 0) || step == last || stopping
  }
}

extension Trainer {
  /// Where and how often `run` writes checkpoints.
  public typealias Checkpointing = CheckpointCadence
}
