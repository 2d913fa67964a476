import CBLAS

/// Whether a GEMM operand is used as stored or transposed.
public enum Transpose: Sendable {
  case none
  case transposed

  fileprivate var cblas: CBLAS_TRANSPOSE { self == .none ? CblasNoTrans : CblasTrans }
}

/// Single-precision matrix products through OpenBLAS's `cblas_sgemm` (row-major).
///
/// Every matrix product of the project goes through here. A tensor is seen as a matrix
/// `[rows, cols]` with `cols` its last dimension and `rows` the product of the others, so a
/// `[B, T, D]` activation is a `[B·T, D]` matrix.
public enum GEMM {
  /// `c = alpha · op(a) · op(b) + beta · c`.
  ///
  /// - c: `[M, N]`; a: `[M, K]` (or `[K, M]` with `.transposed`); b: `[K, N]` (or `[N, K]`
  ///   with `.transposed`). `beta: 1` accumulates into `c`, as backward passes do.
  public static func multiply(
    into c: Tensor, _ a: Tensor, _ b: Tensor, transposeA opA: Transpose = .none,
    transposeB opB: Transpose = .none, alpha: Float = 1, beta: Float = 0
  ) {
    let (aRows, aCols) = matrixShape(a)
    let (bRows, bCols) = matrixShape(b)
    let (cRows, cCols) = matrixShape(c)
    let m = opA == .none ? aRows : aCols
    let k = opA == .none ? aCols : aRows
    let kB = opB == .none ? bRows : bCols
    let n = opB == .none ? bCols : bRows
    precondition(
      k == kB && cRows == m && cCols == n,
      "GEMM shapes do not agree: c\(c.shape) = a\(a.shape)\(opA == .none ? "" : "ᵀ") · b\(b.shape)\(opB == .none ? "" : "ᵀ")"
    )
    sgemm(
      c: c.base, a: a.base, opA, lda: aCols, b: b.base, opB, ldb: bCols, ldc: cCols,
      m: m, n: n, k: k, alpha: alpha, beta: beta)
  }

  /// Pointer-level `cblas_sgemm` for kernels that work on sub-blocks with leading dimensions.
  /// `split: false` keeps the product on the calling thread (for callers already running
  /// on every kernel thread).
  ///
  /// - c: `[M, N]` with row stride `ldc`; a: `[M, K]` (or `[K, M]` transposed) with row stride
  ///   `lda`; b: `[K, N]` (or `[N, K]` transposed) with row stride `ldb`.
  package static func sgemm(
    c: UnsafeMutablePointer<Float>, a: UnsafePointer<Float>, _ opA: Transpose, lda: Int,
    b: UnsafePointer<Float>, _ opB: Transpose, ldb: Int, ldc: Int,
    m: Int, n: Int, k: Int, alpha: Float, beta: Float, split: Bool = true
  ) {
    guard m > 0 && n > 0 else { return }
    if k == 0 {
      // BLAS leaves C untouched for K = 0 only when beta = 1; make the math exact.
      for row in 0..<m { (c + row * ldc).update(repeating: 0, count: n) }
      return
    }
    if m == 1 {
      // One row (a token during generation): a matrix-vector product reads the weights
      // once, where sgemm would first pack them.
      let incx = opA == .none ? 1 : lda
      // A matrix-vector product is short and memory-bound: OpenBLAS's own threads (warm
      // between the calls of one token) split it with less overhead than a dispatch would.
      let threaded = split && Parallel.width > 1 && n * k >= 1 << 16
      if threaded { BLAS.setInternalThreads(Parallel.width) }
      defer { if threaded { BLAS.setInternalThreads(1) } }
      if opB == .transposed {
        // c[1, N] = a · bᵀ with b [N, K]: c = b · a
        cblas_sgemv(
          CblasRowMajor, CblasNoTrans, blasInt(n), blasInt(k), alpha, b, blasInt(ldb), a, blasInt(incx), beta,
          c, 1)
      } else {
        // c[1, N] = a · b with b [K, N]: c = bᵀ · a
        cblas_sgemv(
          CblasRowMajor, CblasTrans, blasInt(k), blasInt(n), alpha, b, blasInt(ldb), a, blasInt(incx), beta,
          c, 1)
      }
      return
    }
    // Large products are split across the kernel threads: by rows of C when it has enough,
    // else by columns; each part is an independent single-threaded sgemm.
    let work = m * n * k
    if split && Parallel.width > 1 && work >= 1 << 21 && max(m, n) >= 64 {
      let (aAddress, bAddress, cAddress) = (UncheckedSendable(a), UncheckedSendable(b), UncheckedSendable(c))
      if m >= n {
        Parallel.forRanges(m, grain: 32) { rows, _ in
          let aPart = opA == .none ? aAddress.value + rows.lowerBound * lda : aAddress.value + rows.lowerBound
          cblas_sgemm(
            CblasRowMajor, opA.cblas, opB.cblas, blasInt(rows.count), blasInt(n), blasInt(k), alpha,
            aPart, blasInt(lda), bAddress.value, blasInt(ldb), beta, cAddress.value + rows.lowerBound * ldc,
            blasInt(ldc))
        }
      } else {
        Parallel.forRanges(n, grain: 32) { columns, _ in
          let bPart =
            opB == .none ? bAddress.value + columns.lowerBound : bAddress.value + columns.lowerBound * ldb
          cblas_sgemm(
            CblasRowMajor, opA.cblas, opB.cblas, blasInt(m), blasInt(columns.count), blasInt(k), alpha,
            aAddress.value, blasInt(lda), bPart, blasInt(ldb), beta, cAddress.value + columns.lowerBound,
            blasInt(ldc))
        }
      }
      return
    }
    cblas_sgemm(
      CblasRowMajor, opA.cblas, opB.cblas, blasInt(m), blasInt(n), blasInt(k), alpha,
      a, blasInt(lda), b, blasInt(ldb), beta, c, blasInt(ldc))
  }

  /// Floating-point operations of one `[M, K] · [K, N]` product.
  public static func flops(m: Int, n: Int, k: Int) -> Double { 2 * Double(m) * Double(n) * Double(k) }

  private static func matrixShape(_ t: Tensor) -> (rows: Int, cols: Int) {
    guard let cols = t.shape.last else { return (1, 1) }
    return (t.shape.dropLast().reduce(1, *), cols)
  }

  private static func blasInt(_ value: Int) -> blasint {
    precondition(value <= Int(blasint.max), "dimension \(value) exceeds the BLAS integer range")
    return blasint(value)
  }
}
