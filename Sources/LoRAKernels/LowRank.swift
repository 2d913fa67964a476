/// The LoRA update of a frozen linear layer: y = x·W0ᵀ + s·(x·Aᵀ)·Bᵀ, with s the scale
/// (alpha/r, or alpha/√r for rsLoRA). Only A and B are trained.
public enum LowRank {
  /// y += s·u·Bᵀ with u = x·Aᵀ (u is kept for the backward pass).
  /// - y: [N, OUT]; u: [N, R]; x: [N, IN]; a: [R, IN]; b: [OUT, R].
  public static func forward(_ y: Tensor, u: Tensor, x: Tensor, a: Tensor, b: Tensor, scale: Float) {
    PhaseClock.measure(.lora) {
      GEMM.multiply(into: u, x, a, transposeB: .transposed)
      GEMM.multiply(into: y, u, b, transposeB: .transposed, alpha: scale, beta: 1)
    }
  }

  /// Gradients of `forward`, added into gA, gB and (when given) dx:
  /// gB += s·dyᵀ·u, du = s·dy·B, gA += duᵀ·x, dx += du·A.
  /// - dx: [N, IN] or nil; gA: [R, IN]; gB: [OUT, R]; dy: [N, OUT]; x: [N, IN]; u: [N, R];
  ///   du: [N, R] scratch (written).
  public static func backward(
    dx: Tensor?, gA: Tensor, gB: Tensor, dy: Tensor, x: Tensor, u: Tensor, a: Tensor, b: Tensor, scale: Float,
    du: Tensor
  ) {
    PhaseClock.measure(.lora) {
      GEMM.multiply(into: gB, dy, u, transposeA: .transposed, alpha: scale, beta: 1)
      GEMM.multiply(into: du, dy, b, alpha: scale)
      GEMM.multiply(into: gA, du, x, transposeA: .transposed, beta: 1)
      if let dx { GEMM.multiply(into: dx, du, a, beta: 1) }
    }
  }

  /// The input gradient alone, for a frozen update (an ancestor's in a tree of adapters):
  /// du = s·dy·B, dx += du·A.
  /// - dx: [N, IN]; dy: [N, OUT]; a: [R, IN]; b: [OUT, R]; du: [N, R] scratch (written).
  public static func inputGradient(dx: Tensor, dy: Tensor, a: Tensor, b: Tensor, scale: Float, du: Tensor) {
    PhaseClock.measure(.lora) {
      GEMM.multiply(into: du, dy, b, alpha: scale)
      GEMM.multiply(into: dx, du, a, beta: 1)
    }
  }

  /// weight += sign·s·B·A: merges (sign 1) or unmerges (sign −1) the update into a writable
  /// copy of the frozen weight. Merge then unmerge restores it to float tolerance.
  /// - weight: [OUT, IN]; a: [R, IN]; b: [OUT, R].
  public static func merge(into weight: Tensor, a: Tensor, b: Tensor, scale: Float, sign: Float = 1) {
    GEMM.multiply(into: weight, b, a, alpha: sign * scale, beta: 1)
  }
}

extension LowRank {
  /// Rows `rows` of weight = pristine + s·B·A (or of pristine alone without a module): the
  /// copy and the product over a block that stays in cache, so a task switch reads the base
  /// once and writes the merged weight once.
  /// - weight, pristine: [OUT, IN]; a: [R, IN]; b: [OUT, R].
  public static func restore(
    _ weight: Tensor, from pristine: FrozenMatrix, rows: Range<Int>,
    merging module: (a: Tensor, b: Tensor, scale: Float)?
  ) {
    let input = weight.shape[1]
    let block = weight.view(offset: rows.lowerBound * input, shape: [rows.count, input])
    pristine.copyRows(rows, into: block)
    guard let (a, b, scale) = module else { return }
    let rank = a.shape[0]
    let bRows = b.view(offset: rows.lowerBound * rank, shape: [rows.count, rank])
    GEMM.multiply(into: block, bRows, a, alpha: scale, beta: 1)
  }

  /// Calls `body(i)` for each i in 0..<count on the kernel threads.
  public static func inParallel(_ count: Int, _ body: (Int) -> Void) { Parallel.forEach(count, body) }
}
