import Foundation

/// The products of a bf16 frozen matrix with fp32 activations, and which kernel runs them.
///
/// - `.oneDNN`: oneDNN's bf16 matmul (`BF16MatMul`): activations rounded to bf16, fp32
///   accumulation; twice the fp32 rate on CPUs with native bf16 dot products.
/// - `.widened`: the weight widened to fp32 a block of rows at a time into a per-thread scratch
///   (exact: every bf16 value is a Float), each block multiplied by OpenBLAS's sgemm. For CPUs
///   without native bf16, where oneDNN would emulate it at a third of sgemm's rate: the bf16
///   storage still halves the memory and the bytes read, at fp32 speed.
public enum BF16Products {
  public enum Route: String, Sendable, CaseIterable {
    case oneDNN = "onednn"
    case widened
  }

  /// The route this CPU gets by default: oneDNN where it has native bf16, widening elsewhere.
  public static var preferredRoute: Route { BF16MatMul.nativeBF16 ? .oneDNN : .widened }

  /// The route the bf16 products of this task take: `preferredRoute`, or the one
  /// `withRoute` sets.
  public static var route: Route { routeOverride ?? preferredRoute }

  /// Runs `body` with this task's bf16 products on `route` (tests compare the two). A task
  /// local, so other tasks' products keep theirs; threads started inside `body` (thread-ranks)
  /// do not inherit it.
  public static func withRoute<T>(_ route: Route, _ body: () throws -> T) rethrows -> T {
    try $routeOverride.withValue(route) { try body() }
  }

  @TaskLocal private static var routeOverride: Route?

  /// Rows of a weight widened per block: about a megabyte of fp32, at least 16 rows.
  static func blockRows(width: Int) -> Int { max(16, (1 << 18) / max(width, 1)) }

  /// `c = a · op(w) + beta · c` with `w` in bf16.
  /// - c: `[M, N]`; a: `[M, K]`; w: `[N, K]` with `.transposed` (a linear layer's forward),
  ///   `[K, N]` with `.none` (its input gradient).
  public static func multiply(
    into c: Tensor, _ a: Tensor, _ w: BF16Tensor, transposeB opB: Transpose, beta: Float = 0
  ) {
    switch route {
    case .oneDNN:
      let k = a.shape.last ?? 1
      let m = a.count / max(k, 1)
      let n = c.count / max(m, 1)
      // Split by rows over the kernel threads, each part one single-threaded oneDNN call on
      // its own thread: one pool for every kernel, and no OpenMP team left spinning on the
      // cores the next (OpenBLAS or element-wise) step needs.
      let parts = Parallel.width > 1 && m * n * k >= 1 << 21 && m >= 64
      let (aShared, cShared) = (UncheckedSendable(a), UncheckedSendable(c))
      let body: (Range<Int>, Int) -> Void = { rows, _ in
        do {
          let whole = rows.count == m
          try BF16MatMul.multiply(
            into: whole
              ? cShared.value : cShared.value.view(offset: rows.lowerBound * n, shape: [rows.count, n]),
            whole ? aShared.value : aShared.value.view(offset: rows.lowerBound * k, shape: [rows.count, k]),
            w, transposeB: opB, beta: beta, threads: 1)
        } catch {
          // The route is chosen after a probe product succeeded (`BF16Products.check`), so a
          // failure here is a oneDNN fault, not bad input.
          preconditionFailure("\(error)")
        }
      }
      if parts { Parallel.forRanges(m, grain: 32, body) } else { body(0..<m, 0) }
    case .widened:
      widened(into: c, a, w, transposeB: opB, beta: beta)
    }
  }

  /// The widened route: one sgemm per block of the weight's rows.
  static func widened(into c: Tensor, _ a: Tensor, _ w: BF16Tensor, transposeB opB: Transpose, beta: Float) {
    let wRows = w.shape.dropLast().reduce(1, *)
    let wCols = w.shape.last ?? 1
    let m = a.count / max(opB == .transposed ? wCols : wRows, 1)
    let n = opB == .transposed ? wRows : wCols
    precondition(
      a.count == m * (opB == .transposed ? wCols : wRows) && c.count == m * n,
      "bf16 product shapes do not agree: c\(c.shape) = a\(a.shape) · w\(w.shape)\(opB == .none ? "" : "ᵀ")")
    let block = blockRows(width: wCols)
    let scratch = WideningScratch.current.floats(min(block, wRows) * wCols)
    for r0 in stride(from: 0, to: wRows, by: block) {
      let rows = min(block, wRows - r0)
      let source = UncheckedSendable(w.base + r0 * wCols)
      let destination = UncheckedSendable(scratch)
      Parallel.forRanges(rows, grain: 16) { part, _ in
        BFloat16.widen(
          destination.value + part.lowerBound * wCols, source.value + part.lowerBound * wCols,
          count: part.count * wCols)
      }
      if opB == .transposed {
        // c[:, r0..<r0+rows] = a · blockᵀ (+ beta · c): output columns are the weight's rows.
        GEMM.sgemm(
          c: c.base + r0, a: a.base, .none, lda: wCols, b: scratch, .transposed, ldb: wCols, ldc: n,
          m: m, n: rows, k: wCols, alpha: 1, beta: beta)
      } else {
        // c (+)= a[:, r0..<r0+rows] · block: the weight's rows are the reduction; the first
        // block applies beta, later ones add.
        GEMM.sgemm(
          c: c.base, a: a.base + r0, .none, lda: wRows, b: scratch, .none, ldb: wCols, ldc: n,
          m: m, n: n, k: rows, alpha: 1, beta: r0 == 0 ? beta : 1)
      }
    }
  }
}

/// One thread's fp32 scratch for widened weight blocks, grown only when a larger block comes
/// and freed when the thread exits.
package final class WideningScratch {
  private var base: UnsafeMutablePointer<Float>?
  private var capacity = 0

  /// The calling thread's scratch.
  package static var current: WideningScratch {
    if let pointer = pthread_getspecific(key) {
      return Unmanaged<WideningScratch>.fromOpaque(pointer).takeUnretainedValue()
    }
    let scratch = WideningScratch()
    pthread_setspecific(key, Unmanaged.passRetained(scratch).toOpaque())
    return scratch
  }

  private static let key: pthread_key_t = {
    var key = pthread_key_t()
    let status = pthread_key_create(&key) { pointer in
      if let pointer { Unmanaged<WideningScratch>.fromOpaque(pointer).release() }
    }
    precondition(status == 0, "pthread_key_create failed with \(status)")
    return key
  }()

  /// At least `count` floats.
  package func floats(_ count: Int) -> UnsafeMutablePointer<Float> {
    if let base, capacity >= count { return base }
    base?.deallocate()
    let grown = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
    base = grown
    capacity = count
    return grown
  }

  deinit { base?.deallocate() }
}

extension BF16Products {
  /// Runs one small product on the current route, so a CPU or library that cannot do it
  /// fails here, with oneDNN's status, rather than in the middle of a pass.
  public static func check() throws(BF16Error) {
    guard route == .oneDNN else { return }
    let w = BF16Tensor(carving: Tensor(zeros: [32 * 32]), offset: 0, shape: [32, 32])
    try BF16MatMul.multiply(
      into: Tensor(zeros: [4, 32]), Tensor(zeros: [4, 32]), w, transposeB: .transposed)
  }
}
