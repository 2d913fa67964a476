/// Token embedding lookup.
public enum Embedding {
  /// out[n, :] = table[ids[n], :].
  /// - out: [N, D]; table: [V, D]; ids: N token ids, each in 0..<V (checked).
  public static func forward(_ out: Tensor, table: Tensor, ids: [Int32]) {
    let width = table.shape.last ?? 0
    let vocabulary = table.count / max(width, 1)
    precondition(
      out.count == ids.count * width, "embedding output \(out.shape) for \(ids.count) ids of width \(width)")
    for (n, id) in ids.enumerated() {
      precondition(id >= 0 && Int(id) < vocabulary, "token id \(id) outside the vocabulary of \(vocabulary)")
      (out.base + n * width).update(from: table.base + Int(id) * width, count: width)
    }
  }

  /// The same lookup in a frozen table of either precision (bf16 rows are widened exactly).
  /// - out: [N, D]; table: [V, D]; ids: N token ids, each in 0..<V (checked).
  public static func forward(_ out: Tensor, table: FrozenMatrix, ids: [Int32]) {
    switch table {
    case .f32(let t):
      forward(out, table: t, ids: ids)
    case .bf16(let t):
      let width = t.shape.last ?? 0
      let vocabulary = t.count / max(width, 1)
      precondition(
        out.count == ids.count * width, "embedding output \(out.shape) for \(ids.count) ids of width \(width)"
      )
      for (n, id) in ids.enumerated() {
        precondition(
          id >= 0 && Int(id) < vocabulary, "token id \(id) outside the vocabulary of \(vocabulary)")
        BFloat16.widen(out.base + n * width, t.base + Int(id) * width, count: width)
      }
    }
  }
}
