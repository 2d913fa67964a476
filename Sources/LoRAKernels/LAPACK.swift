import CBLAS

/// A LAPACK routine that reported failure.
public struct LAPACKError: Error, Equatable, CustomStringConvertible {
  /// The routine, e.g. "dgesdd".
  public var routine: String
  /// Its INFO: < 0 names a bad argument, > 0 that the routine did not converge.
  public var info: Int
  /// What was being decomposed, e.g. "model.layers.3.self_attn.q_proj ΔW core [8, 8]".
  public var subject: String

  public var description: String {
    let reason =
      info < 0 ? "argument \(-info) was rejected" : "it did not converge (INFO = \(info))"
    return "LAPACK \(routine) failed on \(subject): \(reason)"
  }
}

/// Double-precision linear algebra on small row-major matrices for adapter analysis:
/// decompositions through LAPACK (OpenBLAS's `dgesdd_`, `dgeqrf_`, `dorgqr_`) and products
/// through `cblas_dgemm`.
public enum LAPACK {
  /// C [M, N] = op(A) · op(B), with op(A) [M, K] and op(B) [K, N] (A stored [K, M] when
  /// `transposeA`, B stored [N, K] when `transposeB`), row-major.
  public static func product(
    _ a: [Double], _ b: [Double], m: Int, n: Int, k: Int, transposeA: Bool = false, transposeB: Bool = false
  ) -> [Double] {
    precondition(
      a.count == m * k && b.count == k * n, "product of [\(a.count)] and [\(b.count)] as \(m)×\(k)·\(k)×\(n)")
    var c = [Double](repeating: 0, count: m * n)
    guard m > 0 && n > 0 && k > 0 else { return c }
    cblas_dgemm(
      CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
      blasint(m), blasint(n), blasint(k), 1, a, blasint(transposeA ? m : k), b, blasint(transposeB ? k : n),
      0, &c,
      blasint(n))
    return c
  }

  /// The thin SVD of X [M, N] (row-major): X = U · diag(S) · Vᵀ with K = min(M, N).
  /// - Returns: u [M, K], s [K] descending, vt [K, N], all row-major.
  public static func svd(_ x: [Double], rows m: Int, columns n: Int, subject: String) throws(LAPACKError)
    -> (u: [Double], s: [Double], vt: [Double])
  {
    precondition(x.count == m * n && m > 0 && n > 0, "svd of \(x.count) values as [\(m), \(n)]")
    // Row-major X is column-major Xᵀ [N, M]; LAPACK gives Xᵀ = U' S V'ᵀ, so X = V' S U'ᵀ.
    // Its U' (column-major [N, K]) read row-major is Vᵀ [K, N], and its V'ᵀ (column-major
    // [K, M]) read row-major is U [M, K].
    let k = min(m, n)
    var a = x
    var s = [Double](repeating: 0, count: k)
    var vt = [Double](repeating: 0, count: k * n)
    var u = [Double](repeating: 0, count: m * k)
    var (rows, columns, lda, ldu, ldvt) = (Int32(n), Int32(m), Int32(n), Int32(n), Int32(k))
    var iwork = [Int32](repeating: 0, count: 8 * k)
    var info: Int32 = 0
    var size = 0.0
    var query: Int32 = -1
    let job: CChar = 0x53  // "S": the first K columns of U and rows of Vᵀ
    withUnsafePointer(to: job) { job in
      dgesdd_(job, &rows, &columns, &a, &lda, &s, &vt, &ldu, &u, &ldvt, &size, &query, &iwork, &info, 1)
    }
    guard info == 0 else { throw LAPACKError(routine: "dgesdd", info: Int(info), subject: subject) }
    var lwork = Int32(size.rounded(.up))
    var work = [Double](repeating: 0, count: Int(lwork))
    withUnsafePointer(to: job) { job in
      dgesdd_(job, &rows, &columns, &a, &lda, &s, &vt, &ldu, &u, &ldvt, &work, &lwork, &iwork, &info, 1)
    }
    guard info == 0 else { throw LAPACKError(routine: "dgesdd", info: Int(info), subject: subject) }
    return (u, s, vt)
  }

  /// The thin QR of X [M, N] (row-major, M ≥ N): X = Q · R.
  /// - Returns: q [M, N] with orthonormal columns and r [N, N] upper triangular, row-major.
  public static func qr(_ x: [Double], rows m: Int, columns n: Int, subject: String) throws(LAPACKError)
    -> (q: [Double], r: [Double])
  {
    precondition(x.count == m * n && m >= n && n > 0, "qr of \(x.count) values as [\(m), \(n)]")
    // Column-major copy of X.
    var a = [Double](repeating: 0, count: m * n)
    for i in 0..<m { for j in 0..<n { a[j * m + i] = x[i * n + j] } }
    var (rows, columns, lda) = (Int32(m), Int32(n), Int32(m))
    var tau = [Double](repeating: 0, count: n)
    var info: Int32 = 0
    var size = 0.0
    var query: Int32 = -1
    dgeqrf_(&rows, &columns, &a, &lda, &tau, &size, &query, &info)
    guard info == 0 else { throw LAPACKError(routine: "dgeqrf", info: Int(info), subject: subject) }
    var lwork = Int32(max(size.rounded(.up), Double(n)))
    var work = [Double](repeating: 0, count: Int(lwork))
    dgeqrf_(&rows, &columns, &a, &lda, &tau, &work, &lwork, &info)
    guard info == 0 else { throw LAPACKError(routine: "dgeqrf", info: Int(info), subject: subject) }
    var r = [Double](repeating: 0, count: n * n)
    for i in 0..<n { for j in i..<n { r[i * n + j] = a[j * m + i] } }
    var reflectors = columns
    dorgqr_(&rows, &columns, &reflectors, &a, &lda, &tau, &size, &query, &info)
    guard info == 0 else { throw LAPACKError(routine: "dorgqr", info: Int(info), subject: subject) }
    lwork = Int32(max(size.rounded(.up), Double(n)))
    work = [Double](repeating: 0, count: Int(lwork))
    dorgqr_(&rows, &columns, &reflectors, &a, &lda, &tau, &work, &lwork, &info)
    guard info == 0 else { throw LAPACKError(routine: "dorgqr", info: Int(info), subject: subject) }
    var q = [Double](repeating: 0, count: m * n)
    for i in 0..<m { for j in 0..<n { q[i * n + j] = a[j * m + i] } }
    return (q, r)
  }
}
