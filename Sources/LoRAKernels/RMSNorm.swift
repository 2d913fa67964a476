import Foundation

/// Root-mean-square layer norm (Llama): y = x / sqrt(mean(x²) + eps) · w.
public enum RMSNorm {
  /// - out: [N, D]; reciprocalRMS: [N] (1/sqrt(mean(x²)+eps), kept for the backward pass);
  ///   x: [N, D]; weight: [D].
  public static func forward(_ out: Tensor, reciprocalRMS: Tensor, _ x: Tensor, weight: Tensor, eps: Float) {
    let width = weight.count
    let rows = x.count / width
    precondition(
      out.count == x.count && reciprocalRMS.count >= rows, "RMSNorm shapes: out \(out.shape), x \(x.shape)")
    let xs = x.base
    let ys = out.base
    let w = weight.base
    let r = reciprocalRMS.base
    for row in 0..<rows {
      let xr = xs + row * width
      let yr = ys + row * width
      var sum: Float = 0
      for i in 0..<width { sum += xr[i] * xr[i] }
      let scale = 1 / (sum / Float(width) + eps).squareRoot()
      r[row] = scale
      for i in 0..<width { yr[i] = xr[i] * scale * w[i] }
    }
  }
}
