import LoRAKernels
import LoRAModel

/// The paper's task switch: one adapter at a time merged into the base's adapted matrices,
/// so generation runs at the base's speed with no low-rank terms (zero added latency).
///
/// `model` shares every tensor with the base except the matrices of `targets`, of which it
/// holds private copies; the base (`pristine`) is never written. Switching from adapter P
/// to N changes only the matrices either adapts:
/// - `.exact` (the default): W ← W0 (a copy from the base), then W += s·B_N·A_N. Bit-exact:
///   the weights for N are the same bits whatever was merged before.
/// - `.incremental`: W += [s·B_N | −s·B_P] · [A_N ; A_P], one product over W (half the memory
///   traffic), restoring from the base every `restoreEvery` switches so rounding never drifts
///   further than that many switches' worth.
public final class TaskSwitcher: @unchecked Sendable {
  public enum Method: String, Codable, Sendable {
    case exact
    case incremental
  }

  public let pristine: LlamaModel
  /// The base with the current adapter merged in.
  public let model: LlamaModel
  public let targets: Set<LoRATarget>
  public let method: Method
  public let restoreEvery: Int
  /// The adapter merged now (nil: the base itself).
  public private(set) var current: LoRAAdapter?
  /// Incremental switches since the matrices were last restored from the base.
  public private(set) var sinceRestore = 0
  /// Matrices (layer, target) that differ from the base: written since their last restore.
  private var dirty: Set<[Int]> = []
  /// Concatenated factors: [OUT max, 2·R max] and [2·R max, IN max].
  private let bScratch: Tensor
  private let aScratch: Tensor
  public let maxRank: Int

  /// - targets: the linears adapters may adapt (each gets a private copy: its memory once more).
  public init(
    base: LlamaModel, targets: Set<LoRATarget>, maxRank: Int = 64, method: Method = .exact,
    restoreEvery: Int = 32
  ) {
    pristine = base
    self.targets = targets
    self.method = method
    self.restoreEvery = max(restoreEvery, 1)
    self.maxRank = maxRank
    model = LlamaModel(config: base.config, weights: LlamaWeights(copying: base.weights, writable: targets))
    let shapes = targets.map { $0.shape(base.config) }
    let widest = shapes.map(\.in).max() ?? 0
    let tallest = shapes.map(\.out).max() ?? 0
    bScratch = Tensor(zeros: [tallest * 2 * maxRank])
    aScratch = Tensor(zeros: [2 * maxRank * widest])
  }

  /// Merges `adapter` (nil: back to the base) in place of the current one.
  public func activate(_ adapter: LoRAAdapter?) throws(ServeError) {
    if let adapter {
      for m in adapter.modules {
        guard targets.contains(m.target) else {
          throw .incompatible(
            name: "adapter",
            reason: "it adapts \(m.target.rawValue), which this switcher does not hold writable")
        }
        guard m.rank <= maxRank else {
          throw .incompatible(
            name: "adapter", reason: "rank \(m.rank) exceeds the switcher's largest rank \(maxRank)")
        }
      }
    }
    if adapter === current { return }
    let restore = method == .exact || adapter == nil || sinceRestore + 1 >= restoreEvery
    for l in 0..<model.config.layers {
      for (t, target) in targets.sorted().enumerated() {
        let old = current?.module(layer: l, target: target)
        let new = adapter?.module(layer: l, target: target)
        let key = [l, t]
        let w = model.weights.layers[l].matrix(target)
        if restore {
          // Every matrix written since its last restore (older adapters' rounding included).
          guard dirty.contains(key) || new != nil else { continue }
          w.copy(from: pristine.weights.layers[l].matrix(target))
          dirty.remove(key)
          if let new { LowRank.merge(into: w, a: new.a, b: new.b, scale: new.scale) }
        } else {
          guard old != nil || new != nil else { continue }
          incrementalSwitch(w, from: old, to: new)
        }
        if new != nil || (!restore && old != nil) { dirty.insert(key) }
      }
    }
    sinceRestore = restore ? 0 : sinceRestore + 1
    current = adapter
  }

  /// W += [s_N·B_N | −s_P·B_P] · [A_N ; A_P].
  private func incrementalSwitch(_ w: Tensor, from old: LoRAAdapter.Module?, to new: LoRAAdapter.Module?) {
    let (out, input) = (w.shape[0], w.shape[1])
    let parts = [new.map { ($0, $0.scale) }, old.map { ($0, -$0.scale) }].compactMap { $0 }
    let rank = parts.reduce(0) { $0 + $1.0.rank }
    let b = bScratch.view(offset: 0, shape: [out, rank])
    let a = aScratch.view(offset: 0, shape: [rank, input])
    var column = 0
    for (m, scale) in parts {
      a.view(offset: column * input, shape: [m.rank, input]).copy(from: m.a)
      Tensor.scaledColumns(into: b, columnOffset: column, from: m.b, scale: scale)
      column += m.rank
    }
    GEMM.multiply(into: w, b, a, beta: 1)
  }
}
