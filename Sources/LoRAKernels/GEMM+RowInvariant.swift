import CBLAS

/// Products whose every row is the same whatever other rows share the batch.
///
/// OpenBLAS picks its kernels, edge cases and small-matrix paths by the product's shape, so
/// row i of x·Wᵀ can round differently when x has 1, 5 or 16 rows. A server that batches the
/// rows of many requests needs each row's result to depend on that row alone (so a request
/// gives the same tokens alone or under load). Here rows always go through sgemm in blocks of
/// exactly `blockRows` (the last block padded with zero rows) and columns in fixed chunks
/// of `columnChunk`, so every call has one of a few fixed shapes; `probeBlockRows` picks the
/// largest block for which the kernel in use gives a row the same result at every position
/// of the block.
public final class RowInvariantGEMM: @unchecked Sendable {
  /// Output columns per sgemm call (the last chunk of a matrix may be narrower).
  public static let columnChunk = 512
  /// Rows per sgemm call.
  public let blockRows: Int
  /// Padded input rows [blockRows, maxInput] and one padded output block per thread
  /// [threads, blockRows, columnChunk].
  private let paddedInput: Tensor
  private let paddedOutput: Tensor
  public let maxInput: Int

  /// - maxInput: the widest K of the products to run.
  public init(blockRows: Int, maxInput: Int) {
    precondition(blockRows >= 1, "blockRows must be at least 1")
    self.blockRows = blockRows
    self.maxInput = maxInput
    paddedInput = Tensor(zeros: [blockRows * maxInput])
    paddedOutput = Tensor(zeros: [Parallel.maxWidth * blockRows * RowInvariantGEMM.columnChunk])
  }

  /// out (=|+=) x·wᵀ.
  /// - out: [B, N]; x: [B, K]; w: [N, K]; `accumulate` adds into out (beta 1).
  public func multiply(into out: Tensor, _ x: Tensor, _ w: Tensor, accumulate: Bool = false) {
    let ws = UncheckedSendable(w.base)
    let k = w.shape.last ?? 0
    multiply(into: out, x, n: w.count / max(k, 1), k: k, accumulate: accumulate) { c0, _ in
      UnsafePointer(ws.value + c0 * k)
    }
  }

  /// The same with a frozen weight of either precision. A bf16 weight's chunk of rows is
  /// widened (exactly) into the calling thread's scratch before its products, so each row
  /// gets the bits the fp32 path gives for the same (bf16-valued) weights, and memory is
  /// read at two bytes per weight.
  /// - out: [B, N]; x: [B, K]; w: [N, K].
  public func multiply(into out: Tensor, _ x: Tensor, _ w: FrozenMatrix, accumulate: Bool = false) {
    switch w {
    case .f32(let t):
      multiply(into: out, x, t, accumulate: accumulate)
    case .bf16(let t):
      let k = t.shape.last ?? 0
      let source = UncheckedSendable(UnsafePointer(t.base))
      multiply(into: out, x, n: t.count / max(k, 1), k: k, accumulate: accumulate) { c0, width in
        let chunk = WideningScratch.current.floats(width * k)
        BFloat16.widen(chunk, source.value + c0 * k, count: width * k)
        return UnsafePointer(chunk)
      }
    }
  }

  /// The products over weights whose rows `c0..<c0 + width` (`[width, K]`, contiguous)
  /// `weightRows(c0, width)` returns; called once per chunk and block, on the thread that
  /// multiplies with them.
  private func multiply(
    into out: Tensor, _ x: Tensor, n: Int, k: Int, accumulate: Bool,
    weightRows: (Int, Int) -> UnsafePointer<Float>
  ) {
    let rows = x.count / max(k, 1)
    precondition(
      x.count == rows * k && out.count == rows * n && k <= maxInput,
      "row-invariant product: out\(out.shape) = x\(x.shape) · w[\(n), \(k)]ᵀ (widest K \(maxInput))")
    guard rows > 0 && n > 0 else { return }
    let mb = blockRows
    let blocks = (rows + mb - 1) / mb
    let chunks = (n + Self.columnChunk - 1) / Self.columnChunk
    let tail = rows - (blocks - 1) * mb
    // The last block's rows, padded with zeros to a full block.
    if tail < mb {
      paddedInput.base.update(repeating: 0, count: mb * k)
      paddedInput.base.update(from: x.base + (blocks - 1) * mb * k, count: tail * k)
    }
    let beta: Float = accumulate ? 1 : 0
    if mb == 1 {
      rowByRow(into: out, x, rows: rows, n: n, k: k, beta: beta, weightRows: weightRows)
      return
    }
    let (xs, outs, pin, pout) = (
      UncheckedSendable(x.base), UncheckedSendable(out.base),
      UncheckedSendable(paddedInput.base), UncheckedSendable(paddedOutput.base)
    )
    Parallel.forRanges(blocks * chunks) { units, thread in
      for unit in units {
        let (block, chunk) = (unit / chunks, unit % chunks)
        let c0 = chunk * Self.columnChunk
        let width = min(Self.columnChunk, n - c0)
        let r0 = block * mb
        let weights = weightRows(c0, width)
        if r0 + mb <= rows {
          cblas_sgemm(
            CblasRowMajor, CblasNoTrans, CblasTrans, blasint(mb), blasint(width), blasint(k), 1,
            xs.value + r0 * k, blasint(k), weights, blasint(k), beta, outs.value + r0 * n + c0, blasint(n))
        } else {
          let scratch = pout.value + thread * mb * Self.columnChunk
          let valid = rows - r0
          if accumulate {
            for r in 0..<mb {
              let row = scratch + r * width
              if r < valid {
                row.update(from: outs.value + (r0 + r) * n + c0, count: width)
              } else {
                row.update(repeating: 0, count: width)
              }
            }
          }
          cblas_sgemm(
            CblasRowMajor, CblasNoTrans, CblasTrans, blasint(mb), blasint(width), blasint(k), 1,
            pin.value, blasint(k), weights, blasint(k), beta, scratch, blasint(width))
          for r in 0..<valid {
            (outs.value + (r0 + r) * n + c0).update(from: scratch + r * width, count: width)
          }
        }
      }
    }
  }

  /// One matrix-vector product per row and column chunk, the rows inner, so a chunk of
  /// weights is read from memory once and from cache for the other rows.
  private func rowByRow(
    into out: Tensor, _ x: Tensor, rows: Int, n: Int, k: Int, beta: Float,
    weightRows: (Int, Int) -> UnsafePointer<Float>
  ) {
    let (xs, outs) = (UncheckedSendable(x.base), UncheckedSendable(out.base))
    let size = Self.rowChunk
    let chunks = (n + size - 1) / size
    // Small products stay on this thread (a dispatch costs more than they do); the split
    // never changes a value: each chunk is one call whichever thread makes it.
    withoutActuallyEscaping(weightRows) { weightRows in
      let body: (Range<Int>, Int) -> Void = { range, _ in
        for chunk in range {
          let c0 = chunk * size
          let width = min(size, n - c0)
          let weights = weightRows(c0, width)
          for r in 0..<rows {
            cblas_sgemv(
              CblasRowMajor, CblasNoTrans, blasint(width), blasint(k), 1, weights, blasint(k),
              xs.value + r * k, 1, beta, outs.value + r * n + c0, 1)
          }
        }
      }
      if rows * n * k >= 1 << 16 { Parallel.forRanges(chunks, body) } else { body(0..<chunks, 0) }
    }
  }

  /// Output columns per matrix-vector call with one row per call.
  public static let rowChunk = 128

  /// The largest block (of `candidates`, tried in order) for which sgemm gives a row the same
  /// bits at every position of the block, for every product shape (N, K) in `shapes` (N is
  /// cut into column chunks as `multiply` does); 1 when none passes (one row per call is
  /// invariant by construction). Runs a few small products per candidate.
  public static func probeBlockRows(shapes: [(n: Int, k: Int)], candidates: [Int] = [16, 8, 4, 2]) -> Int {
    var random = SeededRandom(seed: 0x5EED)
    var chunkShapes: Set<[Int]> = []
    for (n, k) in shapes {
      chunkShapes.insert([min(n, columnChunk), k])
      if n > columnChunk && n % columnChunk != 0 { chunkShapes.insert([n % columnChunk, k]) }
    }
    for mb in candidates where mb > 1 {
      var invariant = true
      for shape in chunkShapes.sorted(by: { $0.lexicographicallyPrecedes($1) }) where invariant {
        let (n, k) = (shape[0], shape[1])
        let w = Tensor(zeros: [n, k])
        let x = Tensor(zeros: [mb, k])
        let c = Tensor(zeros: [mb, n])
        let probe = (0..<k).map { _ in random.nextUnitFloat() - 0.5 }
        for i in 0..<w.count { w[i] = random.nextUnitFloat() - 0.5 }
        var reference: [Float] = []
        for position in 0..<mb {
          for i in 0..<x.count { x[i] = random.nextUnitFloat() - 0.5 }
          for i in 0..<k { x[position * k + i] = probe[i] }
          cblas_sgemm(
            CblasRowMajor, CblasNoTrans, CblasTrans, blasint(mb), blasint(n), blasint(k), 1, x.base,
            blasint(k),
            w.base, blasint(k), 0, c.base, blasint(n))
          let row = Array(UnsafeBufferPointer(start: c.base + position * n, count: n))
          if position == 0 {
            reference = row
          } else if row.map(\.bitPattern) != reference.map(\.bitPattern) {
            invariant = false
            break
          }
        }
      }
      if invariant { return mb }
    }
    return 1
  }
}
