import LoRAKernels
import LoRAModel

/// The paper's task switch: one adapter at a time merged into the base's adapted matrices,
/// so generation runs at the base's speed with no low-rank terms (zero added latency).
///
/// `model` shares every tensor with the base except the matrices of `targets`, of which it
/// holds private copies; the base (`pristine`) is never written. Switching to adapter N
/// rewrites only the matrices that N adapts or that differ from the base: each becomes
/// W0 + s·B_N·A_N, in blocks of rows that are copied from the base and merged while they
/// are in cache, on all kernel threads (DoRA's rows then rescaled to their magnitudes). Restoring from the base instead of subtracting the
/// old update makes every switch bit-exact: the weights for N are the same bits whatever
/// was merged before, and switching back to the base gives the base's own bits. (Subtracting
/// s·B_P·A_P and adding s·B_N·A_N in one product over W reads and writes W just as often and
/// drifts by rounding: after 1,000 switches among 4 adapters by more than 1e-6 relative.)
public final class TaskSwitcher: @unchecked Sendable {
  public let pristine: LlamaModel
  /// The base with the current adapter merged in.
  public let model: LlamaModel
  public let targets: Set<LoRATarget>
  /// The adapter merged now (nil: the base itself).
  public private(set) var current: LoRAAdapter?
  /// Matrices (layer, target) that differ from the base.
  private var dirty: Set<[Int]> = []
  /// Rows restored and merged together (a block of a 576-wide matrix is 144 KiB: in cache).
  static let blockRows = 64

  /// - targets: the linears adapters may adapt (each gets a private copy: its memory once more).
  public init(base: LlamaModel, targets: Set<LoRATarget>) {
    pristine = base
    self.targets = targets
    model = LlamaModel(config: base.config, weights: LlamaWeights(copying: base.weights, writable: targets))
  }

  /// Merges `adapter` (nil: back to the base) in place of the current one.
  public func activate(_ adapter: LoRAAdapter?) throws(ServeError) {
    if let v = adapter?.config.virtualTokens {
      throw .incompatible(
        name: "adapter",
        reason:
          "a task switch merges ΔW into the weights, and its \(v.summary) is no weight change: apply it unmerged"
      )
    }
    if let adapter, let m = adapter.modules.first(where: { !targets.contains($0.target) }) {
      throw .incompatible(
        name: "adapter",
        reason: "it adapts \(m.target.rawValue), which the merged model does not hold writable")
    }
    if adapter === current { return }
    var blocks: [(w: Tensor, base: FrozenMatrix, rows: Range<Int>, module: LoRAAdapter.Module?)] = []
    for l in 0..<model.config.layers {
      for (t, target) in targets.sorted().enumerated() {
        let new = adapter?.module(layer: l, target: target)
        let key = [l, t]
        guard dirty.contains(key) || new != nil else { continue }
        // The writable copies are fp32 whatever the base's precision.
        guard let w = model.weights.layers[l].matrix(target).f32 else { continue }
        for start in stride(from: 0, to: w.shape[0], by: Self.blockRows) {
          let rows = start..<min(start + Self.blockRows, w.shape[0])
          blocks.append((w, pristine.weights.layers[l].matrix(target), rows, new))
        }
        if new != nil { dirty.insert(key) } else { dirty.remove(key) }
      }
    }
    LowRank.inParallel(blocks.count) { i in
      let job = blocks[i]
      LowRank.restore(
        job.w, from: job.base, rows: job.rows, merging: job.module.map { ($0.a, $0.b, $0.scale) })
      // DoRA: the block's rows of W0 + s·B·A rescaled to their magnitudes.
      if let magnitude = job.module?.magnitude {
        let width = job.w.shape[1]
        DoRA.normalizeRows(
          job.w.view(offset: job.rows.lowerBound * width, shape: [job.rows.count, width]),
          magnitude: magnitude.view(offset: job.rows.lowerBound, shape: [job.rows.count]))
      }
    }
    current = adapter
  }
}
