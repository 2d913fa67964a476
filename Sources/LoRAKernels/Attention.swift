import Foundation

/// Causal grouped-query attention: each query head h reads key/value head h / (H / KVH).
public enum Attention {
  /// Softmax(q·kᵀ/√HS, causal) · v for every sequence and head.
  ///
  /// Query i of a sequence sits at position `keyLength - queryLength + i` and attends to keys
  /// 0 through that position (training: queryLength == keyLength; generation with a KV cache:
  /// the new queries after the cached keys).
  /// - out: [B, Tq, H, HS]; probabilities: [B, H, Tq, Tk] (kept for the backward pass);
  ///   q: [B, Tq, H, HS]; k, v: [B, S, KVH, HS] with S ≥ Tk rows per sequence (S = Tk for
  ///   activations, the cache capacity for a KV cache).
  public static func forward(
    _ out: Tensor, probabilities: Tensor, q: Tensor, k: Tensor, v: Tensor,
    batch: Int, queryLength: Int, keyLength: Int, keyStride: Int, heads: Int, kvHeads: Int, headSize: Int
  ) {
    precondition(
      keyLength >= queryLength && keyStride >= keyLength,
      "attention over \(keyLength) keys for \(queryLength) queries")
    precondition(
      probabilities.count >= batch * heads * queryLength * keyLength, "attention probabilities too small")
    precondition(
      q.count >= batch * queryLength * heads * headSize && out.count == q.count, "attention q/out shapes")
    precondition(
      k.count >= batch * keyStride * kvHeads * headSize && v.count == k.count, "attention k/v shapes")
    let group = heads / kvHeads
    let offset = keyLength - queryLength
    let scale = 1 / Float(headSize).squareRoot()
    let qRow = heads * headSize
    let kvRow = kvHeads * headSize
    for b in 0..<batch {
      for h in 0..<heads {
        let kv = h / group
        let p = probabilities.base + ((b * heads + h) * queryLength) * keyLength
        let qh = q.base + b * queryLength * qRow + h * headSize
        let kh = k.base + b * keyStride * kvRow + kv * headSize
        let vh = v.base + b * keyStride * kvRow + kv * headSize
        // scores [Tq, Tk] = q_h [Tq, HS] · k_h [Tk, HS]ᵀ · scale
        GEMM.sgemm(
          c: p, a: qh, .none, lda: qRow, b: kh, .transposed, ldb: kvRow, ldc: keyLength,
          m: queryLength, n: keyLength, k: headSize, alpha: scale, beta: 0)
        for i in 0..<queryLength {
          let row = p + i * keyLength
          let visible = offset + i + 1
          var maximum = -Float.infinity
          for j in 0..<visible { maximum = max(maximum, row[j]) }
          var sum: Float = 0
          for j in 0..<visible {
            let e = exp(row[j] - maximum)
            row[j] = e
            sum += e
          }
          let inverse = 1 / sum
          for j in 0..<visible { row[j] *= inverse }
          for j in visible..<keyLength { row[j] = 0 }
        }
        // out_h [Tq, HS] = P [Tq, Tk] · v_h [Tk, HS]
        GEMM.sgemm(
          c: out.base + b * queryLength * qRow + h * headSize, a: p, .none, lda: keyLength, b: vh, .none,
          ldb: kvRow, ldc: qRow, m: queryLength, n: headSize, k: keyLength, alpha: 1, beta: 0)
      }
    }
  }
}
