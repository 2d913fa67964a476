import CBLAS

/// DoRA (weight-decomposed LoRA, PEFT's definition): the adapted weight is
/// W' = m ⊙ (W0 + s·B·A) / ‖W0 + s·B·A‖, the norm taken per output row, with the magnitude
/// m [OUT] trained beside A and B. As in PEFT (and the DoRA paper, §4.3) the norm is a
/// constant of the backward pass: it scales the gradients but receives none.
///
/// A layer computes z = x·W0ᵀ + s·(x·Aᵀ)·Bᵀ (the plain LoRA output, kept for the backward)
/// and y = g ⊙ z with g = m / n, n the row norms; these kernels do the parts around the
/// products LowRank and the frozen weight already run.
public enum DoRA {
  /// Rows of W0 widened per block by `rowNorms` (its scratch holds this many rows).
  public static let blockRows = 64

  /// Floats `rowNorms` needs as scratch for a weight of `inFeatures` columns.
  public static func scratchCount(inFeatures: Int) -> Int { blockRows * inFeatures }

  /// norms[j] = ‖W0[j, :] + s·B[j, :]·A‖ for every output row j, `blockRows` rows at a time
  /// (the rows widened to fp32, the low-rank product added by one GEMM, then each row's norm).
  /// - norms: [OUT]; weight: [OUT, IN]; a: [R, IN]; b: [OUT, R]; scratch: ≥ blockRows·IN.
  public static func rowNorms(
    into norms: Tensor, weight: FrozenMatrix, a: Tensor, b: Tensor, scale: Float, scratch: Tensor
  ) {
    PhaseClock.measure(.lora) {
      let (out, input, rank) = (weight.shape[0], weight.shape[1], a.shape[0])
      precondition(
        norms.count == out && b.shape == [out, rank] && a.shape == [rank, input]
          && scratch.count >= blockRows * input, "DoRA norm shapes")
      for start in stride(from: 0, to: out, by: blockRows) {
        let rows = start..<min(start + blockRows, out)
        let block = scratch.view(offset: 0, shape: [rows.count, input])
        weight.copyRows(rows, into: block)
        let bRows = b.view(offset: start * rank, shape: [rows.count, rank])
        GEMM.multiply(into: block, bRows, a, alpha: scale, beta: 1)
        let (values, n) = (block.base, norms.base)
        for (i, row) in rows.enumerated() {
          n[row] = cblas_snrm2(blasint(input), values + i * input, 1)
        }
      }
    }
  }

  /// out = residual + g ⊙ z row by row, g = magnitude / norms (out = g ⊙ z without a
  /// residual). `out` may be `residual` itself.
  /// - out, z, residual: [N, OUT]; magnitude, norms: [OUT].
  public static func combine(_ out: Tensor, residual: Tensor?, z: Tensor, magnitude: Tensor, norms: Tensor) {
    PhaseClock.measure(.lora) {
      let width = magnitude.count
      let rows = z.count / width
      precondition(out.count == z.count && norms.count == width && (residual?.count ?? z.count) == z.count)
      let (o, zs, r, m, n) = (
        UncheckedSendable(out.base), UncheckedSendable(z.base), residual?.base, magnitude.base, norms.base
      )
      let residualRows = r.map(UncheckedSendable.init)
      Parallel.forRanges(rows, grain: 64) { range, _ in
        for row in range {
          let (y, zr) = (o.value + row * width, zs.value + row * width)
          if let base = residualRows?.value {
            let rr = base + row * width
            for j in 0..<width { y[j] = rr[j] + m[j] / n[j] * zr[j] }
          } else {
            for j in 0..<width { y[j] = m[j] / n[j] * zr[j] }
          }
        }
      }
    }
  }

  /// The backward of `combine` for a layer's output gradient dy: the magnitude's gradient
  /// gm[j] += Σ_rows dy[r, j]·z[r, j] / n[j], then dy scaled in place to g ⊙ dy, the gradient
  /// of z (what the frozen product's input gradient and LoRA's backward then take). One
  /// pass over dy and z; each kernel thread owns a range of columns. With `scaled`, g ⊙ dy
  /// goes there and dy is left as it is (LoRA dropout needs both).
  /// - dy, z, scaled: [N, OUT]; magnitude, norms, gradMagnitude: [OUT].
  public static func backward(
    dy: Tensor, z: Tensor, magnitude: Tensor, norms: Tensor, gradMagnitude: Tensor, scaled: Tensor? = nil
  ) {
    PhaseClock.measure(.lora) {
      let width = magnitude.count
      let rows = z.count / width
      precondition(
        dy.count == z.count && norms.count == width && gradMagnitude.count == width
          && (scaled?.count ?? z.count) == z.count)
      let (d, zs) = (UncheckedSendable(dy.base), UncheckedSendable(z.base))
      let output = UncheckedSendable((scaled ?? dy).base)
      let (m, n, gm) = (magnitude.base, norms.base, UncheckedSendable(gradMagnitude.base))
      Parallel.forRanges(width, grain: 64) { columns, _ in
        for row in 0..<rows {
          let (dr, zr, out) = (d.value + row * width, zs.value + row * width, output.value + row * width)
          for j in columns {
            gm.value[j] += dr[j] * zr[j] / n[j]
            out[j] = dr[j] * m[j] / n[j]
          }
        }
      }
    }
  }

  /// Merges DoRA into a weight that holds W0 + s·B·A: each row j becomes m[j] times itself
  /// over its norm, the adapted weight m ⊙ (W0 + s·B·A) / ‖W0 + s·B·A‖ (task switching,
  /// merged models).
  /// - weight: [OUT, IN]; magnitude: [OUT].
  public static func normalizeRows(_ weight: Tensor, magnitude: Tensor) {
    let (out, input) = (weight.shape[0], weight.shape[1])
    precondition(magnitude.count == out, "DoRA magnitude of \(magnitude.count) for \(out) rows")
    let (w, m) = (weight.base, magnitude.base)
    for j in 0..<out {
      let row = w + j * input
      var sum: Double = 0
      for k in 0..<input { sum += Double(row[k]) * Double(row[k]) }
      let factor = m[j] / Float(sum.squareRoot())
      for k in 0..<input { row[k] *= factor }
    }
  }
}
