/// A frozen tensor stored in bfloat16: a flat, row-major buffer of 16-bit values with a
/// shape, half the memory of the fp32 `Tensor` it was converted from.
///
/// The storage of a bf16 frozen base: written once when converted, read-only afterwards, so
/// any number of threads (ranks) may read it at once. A `[N, K]` weight (out × in, the layout
/// of the fp32 weights) is one operand of `BF16MatMul`. Kernels reach the storage through the
/// `package`-level pointer only.
public final class BF16Tensor: @unchecked Sendable {
  /// Row-major dimensions; the product is `count`.
  public let shape: [Int]
  /// Number of bf16 elements.
  public let count: Int
  /// Start of the elements, owned by this tensor or by `owner`.
  package let base: UnsafeMutablePointer<UInt16>
  /// What keeps `base` valid when this tensor does not own it (the fp32 allocation it was
  /// carved from); nil when this tensor owns `base`.
  private let owner: AnyObject?

  /// `source` rounded to bf16 (to nearest, ties to even).
  ///
  /// - Throws: `BF16Error.notRepresentable` naming `name` (e.g. "blk.3.ffn_up.weight") when
  ///   an element is NaN, infinite, or too large for bf16.
  public init(converting source: Tensor, name: String) throws(BF16Error) {
    if let index = BFloat16.firstUnrepresentable(source.base, count: source.count) {
      throw .notRepresentable(tensor: name, index: index, value: source.base[index])
    }
    self.shape = source.shape
    self.count = source.count
    self.base = UnsafeMutablePointer<UInt16>.allocate(capacity: max(count, 1))
    self.base.initialize(repeating: 0, count: max(count, 1))
    self.owner = nil
    BFloat16.convert(base, source.base, count: count)
  }

  /// A bf16 tensor of `shape` stored in the Float32 slots of `storage` starting at float
  /// `offset` (two bf16 elements per slot), so one allocation (or one node-shared window)
  /// can hold fp32 and bf16 tensors side by side. Keeps `storage` alive.
  public init(carving storage: Tensor, offset: Int, shape: [Int]) {
    let count = Tensor.elementCount(shape)
    precondition(
      offset >= 0 && offset + Self.floatSlots(count) <= storage.count,
      "bf16 view of \(shape) at float \(offset) exceeds a tensor of \(storage.count) floats")
    self.shape = shape
    self.count = count
    self.base = UnsafeMutableRawPointer(storage.base + offset).assumingMemoryBound(to: UInt16.self)
    self.owner = storage
  }

  /// A bf16 tensor over memory owned by `owner` (bf16 data in a memory-mapped, read-only
  /// file: such a tensor must never be written).
  package init(external base: UnsafeMutablePointer<UInt16>, shape: [Int], owner: AnyObject) {
    self.shape = shape
    self.count = Tensor.elementCount(shape)
    self.base = base
    self.owner = owner
  }

  /// Float32 slots that hold `count` bf16 elements (rounded up to a whole slot).
  public static func floatSlots(_ count: Int) -> Int { (count + 1) / 2 }

  /// Stores `source` rounded to bf16 into this tensor's elements.
  ///
  /// - Throws: `BF16Error.notRepresentable` naming `name` when an element of `source` is NaN,
  ///   infinite, or too large for bf16; nothing is written then.
  public func store(_ source: Tensor, name: String) throws(BF16Error) {
    precondition(source.count == count, "storing \(source.count) values into a bf16 tensor of \(count)")
    if let index = BFloat16.firstUnrepresentable(source.base, count: source.count) {
      throw .notRepresentable(tensor: name, index: index, value: source.base[index])
    }
    BFloat16.convert(base, source.base, count: count)
  }

  deinit { if owner == nil { base.deallocate() } }

  /// Element `index` of the flat buffer, widened to Float.
  public subscript(index: Int) -> Float {
    precondition(index >= 0 && index < count, "index \(index) out of range 0..<\(count)")
    return BFloat16.float(base[index])
  }

  /// Rows `rows` of this tensor seen as a matrix `[R, C]` (C its last dimension), widened
  /// into `destination`: `[rows.count, C]`.
  public func widenRows(_ rows: Range<Int>, into destination: Tensor) {
    let width = shape.last ?? 1
    precondition(
      rows.lowerBound >= 0 && rows.upperBound * width <= count && destination.count == rows.count * width,
      "widening rows \(rows) of \(shape) into \(destination.shape)")
    BFloat16.widen(destination.base, base + rows.lowerBound * width, count: rows.count * width)
  }

  /// The elements widened to fp32 (exactly: every bf16 value is a Float).
  public func widened() -> Tensor {
    let result = Tensor(zeros: shape)
    result.withUnsafeMutableBufferPointer { buffer in
      guard let destination = buffer.baseAddress else { return }
      BFloat16.widen(destination, base, count: count)
    }
    return result
  }
}

extension BF16Tensor: CustomStringConvertible {
  public var description: String { "BF16Tensor\(shape)" }
}
