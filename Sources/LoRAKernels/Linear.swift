/// A frozen linear layer's product, y = x · Wᵀ (+ b), as PyTorch's `nn.Linear` stores W.
public enum Linear {
  /// - out: [N, OUT]; x: [N, IN]; weight: [OUT, IN]; bias: [OUT] or nil.
  public static func forward(_ out: Tensor, _ x: Tensor, weight: Tensor, bias: Tensor? = nil) {
    GEMM.multiply(into: out, x, weight, transposeB: .transposed)
    if let bias { addBias(out, bias) }
  }

  /// out[n, :] += bias for every row.
  /// - out: [N, OUT]; bias: [OUT].
  public static func addBias(_ out: Tensor, _ bias: Tensor) {
    let width = bias.count
    let rows = out.count / width
    let o = out.base
    let b = bias.base
    for r in 0..<rows {
      let row = o + r * width
      for i in 0..<width { row[i] += b[i] }
    }
  }
}
