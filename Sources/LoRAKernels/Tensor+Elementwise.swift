/// Element-wise operations on whole tensors of equal count (collectives, optimizers).
extension Tensor {
  /// A new tensor with the same shape and a copy of the elements.
  public func clone() -> Tensor {
    let copy = Tensor(zeros: shape)
    copy.base.update(from: base, count: count)
    return copy
  }

  /// `self[i] += other[i]`.
  public func add(_ other: Tensor) {
    precondition(other.count == count, "add of \(other.count) elements into \(count)")
    let x = base
    let y = other.base
    for i in 0..<count { x[i] += y[i] }
  }

  /// `self[i] -= other[i]`.
  public func subtract(_ other: Tensor) {
    precondition(other.count == count, "subtract of \(other.count) elements from \(count)")
    let x = base
    let y = other.base
    for i in 0..<count { x[i] -= y[i] }
  }

  /// `self[i] = max(self[i], other[i])`.
  public func maximum(_ other: Tensor) {
    precondition(other.count == count, "maximum of \(other.count) elements with \(count)")
    let x = base
    let y = other.base
    for i in 0..<count { x[i] = Swift.max(x[i], y[i]) }
  }

  /// `self[i] = min(self[i], other[i])`.
  public func minimum(_ other: Tensor) {
    precondition(other.count == count, "minimum of \(other.count) elements with \(count)")
    let x = base
    let y = other.base
    for i in 0..<count { x[i] = Swift.min(x[i], y[i]) }
  }

  /// `self[i] *= factor`.
  public func scale(by factor: Float) {
    let x = base
    for i in 0..<count { x[i] *= factor }
  }
}
