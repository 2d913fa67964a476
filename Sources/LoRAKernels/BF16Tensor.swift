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
  /// Start of the elements, owned by this tensor.
  package let base: UnsafeMutablePointer<UInt16>

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
    BFloat16.convert(base, source.base, count: count)
  }

  deinit { base.deallocate() }

  /// Element `index` of the flat buffer, widened to Float.
  public subscript(index: Int) -> Float {
    precondition(index >= 0 && index < count, "index \(index) out of range 0..<\(count)")
    return BFloat16.float(base[index])
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
