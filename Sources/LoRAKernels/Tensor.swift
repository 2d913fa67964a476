/// A flat, contiguous Float32 buffer with a row-major shape.
///
/// The one container of numbers in the project: weights, adapter parameters, gradients,
/// optimizer moments and activations are all `Tensor`s or views into one. A tensor either
/// owns its memory (allocated zeroed, freed in `deinit`) or is a view into a parent tensor,
/// which it keeps alive. Views let one allocation per kind of memory hold many matrices, so
/// an all-reduce or a checkpoint touches one buffer.
///
/// Element access through the subscript is bounds-checked; kernels reach the storage
/// through `package`-level pointer accessors only.
public final class Tensor: @unchecked Sendable {
  /// Row-major dimensions; the product is `count`. A scalar has shape `[]` and count 1.
  public let shape: [Int]
  /// Number of Float elements.
  public let count: Int
  /// Start of the elements; owned by this tensor or by `parent`.
  package let base: UnsafeMutablePointer<Float>
  /// What keeps `base` valid when this tensor does not own it: the parent tensor of a view,
  /// or the owner of external memory (a mapped file). Nil when this tensor owns `base`.
  private let owner: AnyObject?

  /// A zero-filled tensor of the given shape.
  public init(zeros shape: [Int]) {
    let count = Tensor.elementCount(shape)
    self.shape = shape
    self.count = count
    self.base = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
    self.base.initialize(repeating: 0, count: max(count, 1))
    self.owner = nil
  }

  /// A tensor holding a copy of `values`, which must have exactly `shape`'s element count.
  public convenience init(shape: [Int], values: [Float]) {
    self.init(zeros: shape)
    precondition(values.count == count, "Tensor(shape: \(shape)) needs \(count) values, got \(values.count)")
    values.withUnsafeBufferPointer { source in
      guard let src = source.baseAddress else { return }
      base.update(from: src, count: count)
    }
  }

  /// A tensor of `shape` filled with `value`.
  public convenience init(shape: [Int], repeating value: Float) {
    self.init(zeros: shape)
    base.update(repeating: value, count: count)
  }

  private init(viewOf parent: Tensor, offset: Int, shape: [Int]) {
    self.shape = shape
    self.count = Tensor.elementCount(shape)
    self.base = parent.base + offset
    self.owner = parent
  }

  /// A tensor over memory owned by `owner` (for example Float32 data in a memory-mapped,
  /// read-only file: such a tensor must never be written).
  package init(external base: UnsafeMutablePointer<Float>, shape: [Int], owner: AnyObject) {
    self.shape = shape
    self.count = Tensor.elementCount(shape)
    self.base = base
    self.owner = owner
  }

  deinit {
    if owner == nil { base.deallocate() }
  }

  /// A view of `shape` starting `offset` elements into this tensor; writes through the view
  /// change this tensor. The view keeps this tensor alive.
  public func view(offset: Int, shape: [Int]) -> Tensor {
    let viewCount = Tensor.elementCount(shape)
    precondition(
      offset >= 0 && offset + viewCount <= count,
      "view of \(shape) at offset \(offset) exceeds a tensor of \(count) elements")
    return Tensor(viewOf: self, offset: offset, shape: shape)
  }

  /// The same elements seen with another shape of equal element count (no copy).
  public func reshaped(_ shape: [Int]) -> Tensor {
    precondition(Tensor.elementCount(shape) == count, "cannot reshape \(self.shape) to \(shape)")
    return Tensor(viewOf: self, offset: 0, shape: shape)
  }

  /// Element `index` of the flat buffer.
  public subscript(index: Int) -> Float {
    get {
      precondition(index >= 0 && index < count, "index \(index) out of range 0..<\(count)")
      return base[index]
    }
    set {
      precondition(index >= 0 && index < count, "index \(index) out of range 0..<\(count)")
      base[index] = newValue
    }
  }

  /// The elements as a new array.
  public var values: [Float] { Array(UnsafeBufferPointer(start: base, count: count)) }

  /// Sets every element to zero.
  public func zero() { base.update(repeating: 0, count: count) }

  /// Sets every element to `value`.
  public func fill(_ value: Float) { base.update(repeating: value, count: count) }

  /// Copies all elements of `source`, which must have the same count.
  public func copy(from source: Tensor) {
    precondition(source.count == count, "copy of \(source.count) elements into \(count)")
    base.update(from: source.base, count: count)
  }

  /// Mutable access to the elements (for kernels and the C-facing files).
  package func withUnsafeMutableBufferPointer<R>(_ body: (UnsafeMutableBufferPointer<Float>) throws -> R)
    rethrows -> R
  {
    try body(UnsafeMutableBufferPointer(start: base, count: count))
  }

  /// The element count of `shape`; every dimension must be non-negative.
  public static func elementCount(_ shape: [Int]) -> Int {
    shape.reduce(1) { total, dim in
      precondition(dim >= 0, "negative dimension in shape \(shape)")
      return total * dim
    }
  }
}

extension Tensor: CustomStringConvertible {
  public var description: String { "Tensor\(shape)" }
}
