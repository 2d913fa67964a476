/// Hands out tensors as views into a few large blocks, and after `reset()` hands out the
/// same memory again. Buffer sets that are never used at the same time (one per sequence
/// length of a run) share one arena: built largest first, each later set fits into the
/// blocks the first one made, so memory is that of the largest set.
public final class TensorArena: @unchecked Sendable {
  private var blocks: [Tensor] = []
  private var block = 0
  private var offset = 0
  /// Set for a counting arena: the one element every tensor it hands out points at.
  private let countingStorage: Tensor?
  private var counted = 0

  public init() { countingStorage = nil }

  private init(counting storage: Tensor) { countingStorage = storage }

  /// An arena that hands out no memory: every tensor it returns points at one shared element
  /// and must never be read or written. Building a set of buffers from it (without using
  /// them) counts their floats exactly (`capacity`), for memory estimates of models too
  /// large to allocate for.
  public static func counting() -> TensorArena { TensorArena(counting: Tensor(zeros: [1])) }

  /// Starts handing out the arena's memory from the beginning again.
  public func reset() {
    block = 0
    offset = 0
  }

  /// A tensor of `shape` from the arena's blocks (its contents are whatever was there).
  public func tensor(_ shape: [Int]) -> Tensor {
    let count = Tensor.elementCount(shape)
    if let countingStorage {
      counted += count
      return Tensor(external: countingStorage.base, shape: shape, owner: countingStorage)
    }
    while block < blocks.count {
      if offset + count <= blocks[block].count {
        defer { offset += count }
        return blocks[block].view(offset: offset, shape: shape)
      }
      block += 1
      offset = 0
    }
    let fresh = Tensor(zeros: [max(count, 1)])
    blocks.append(fresh)
    block = blocks.count - 1
    offset = count
    return fresh.view(offset: 0, shape: shape)
  }

  /// Floats held by the arena.
  public var capacity: Int { countingStorage == nil ? blocks.reduce(0) { $0 + $1.count } : counted }
}
