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

extension Tensor {
  /// out[:, offset ..< offset + C] = scale · source (the columns of a wider matrix).
  /// - out: [R, W]; source: [R, C] with offset + C ≤ W.
  public static func scaledColumns(
    into out: Tensor, columnOffset offset: Int, from source: Tensor, scale: Float
  ) {
    let (rows, width) = (out.shape[0], out.shape[1])
    let columns = source.shape[1]
    precondition(
      source.shape[0] == rows && offset + columns <= width,
      "columns \(source.shape) into \(out.shape) at \(offset)")
    for r in 0..<rows {
      let to = out.base + r * width + offset
      let from = source.base + r * columns
      for c in 0..<columns { to[c] = scale * from[c] }
    }
  }
}
