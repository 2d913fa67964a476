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
    let (xs, ys, w, r) = (
      UncheckedSendable(x.base), UncheckedSendable(out.base), weight.base, reciprocalRMS.base
    )
    Parallel.forRanges(rows, grain: 64) { range, _ in
      for row in range {
        let xr = xs.value + row * width
        let yr = ys.value + row * width
        var sum: Float = 0
        for i in 0..<width { sum += xr[i] * xr[i] }
        let scale = 1 / (sum / Float(width) + eps).squareRoot()
        r[row] = scale
        for i in 0..<width { yr[i] = xr[i] * scale * w[i] }
      }
    }
  }
}

extension RMSNorm {
  /// Adds the input gradient of `forward` (the weight is frozen: no weight gradient).
  ///
  /// With r = 1/sqrt(mean(x²)+eps) and y = x·r·w:
  /// dx = r·(w⊙dy) − (r³/D)·x·Σ(w⊙dy⊙x).
  /// - dx: [N, D] (accumulated); dy: [N, D]; x: [N, D]; reciprocalRMS: [N] from the forward;
  ///   weight: [D].
  public static func backward(_ dx: Tensor, _ dy: Tensor, _ x: Tensor, reciprocalRMS: Tensor, weight: Tensor)
  {
    let width = weight.count
    let rows = x.count / width
    precondition(dx.count == x.count && dy.count == x.count, "RMSNorm backward shapes")
    let (w, xs, dys, dxs, rs) = (weight.base, x.base, dy.base, dx.base, reciprocalRMS.base)
    Parallel.forRanges(rows, grain: 64) { range, _ in
      for row in range {
        let xr = xs + row * width
        let gy = dys + row * width
        let gx = dxs + row * width
        let r = rs[row]
        var dot: Float = 0
        for i in 0..<width { dot += w[i] * gy[i] * xr[i] }
        let c = r * r * r * dot / Float(width)
        for i in 0..<width { gx[i] += r * w[i] * gy[i] - c * xr[i] }
      }
    }
  }

  /// Recomputes the normalised rows from the input and the saved factors (cheaper than
  /// keeping them): out = x·r·w.
  /// - out, x: [N, D]; reciprocalRMS: [N]; weight: [D].
  public static func recompute(_ out: Tensor, _ x: Tensor, reciprocalRMS: Tensor, weight: Tensor) {
    let width = weight.count
    let rows = x.count / width
    let (w, xs, ys, rs) = (weight.base, x.base, out.base, reciprocalRMS.base)
    Parallel.forRanges(rows, grain: 64) { range, _ in
      for row in range {
        let xr = xs + row * width
        let yr = ys + row * width
        let r = rs[row]
        for i in 0..<width { yr[i] = xr[i] * r * w[i] }
      }
    }
  }
}
