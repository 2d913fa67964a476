import CVectorMath
import Foundation

/// Causal grouped-query attention: each query head h reads key/value head h / (H / KVH).
///
/// Query i of a sequence sits at position `keyLength - queryLength + i` and attends to keys
/// 0 through that position (training: queryLength == keyLength; generation with a KV cache:
/// the new queries after the cached keys). Rows are processed in blocks of `blockRows`, and
/// each block's products stop at the last key it can see, so the masked upper triangle is
/// skipped instead of computed and thrown away. Probabilities are not kept: the backward pass
/// recomputes them from q and k (the cost of one q·kᵀ product), which saves B·H·T² floats per
/// layer.
///
/// Packed rows (`spans`) hold several sequences back to back: each span is a sequence of its
/// own, whose queries see only its keys (a block-diagonal causal mask), computed span by span
/// so no product crosses two sequences.
///
/// Products run in fp32 (OpenBLAS's sgemm) or, with `precision: .bf16`, in bf16 through
/// oneDNN with fp32 accumulation (`Attention+BF16.swift`): q, k, v, the probabilities and
/// their gradients are rounded to bf16 as each product reads them, as under PyTorch's bf16
/// autocast; the softmax and its gradient stay fp32.
public enum Attention {
  /// What attention's products multiply in.
  public enum Precision: String, Sendable, CaseIterable {
    case f32
    case bf16
  }

  /// One sequence inside a packed batch: rows [start, start + count) of row-sequence `row`.
  public struct Span: Sendable, Equatable {
    public var row: Int
    public var start: Int
    public var count: Int
    public init(row: Int, start: Int, count: Int) {
      self.row = row
      self.start = start
      self.count = count
    }
  }

  /// Whether bf16 products run on a oneDNN kernel here (AVX-512 and a non-reference
  /// implementation), probed once.
  public static var bf16Available: Bool { BF16MatMul.available && BF16GEMM.accelerated }

  /// Rows of queries handled per block.
  static let blockRows = 64

  /// The scratch size `forward` and `backward` need: `scratch` holds at least this many floats
  /// (with `spans`, for a query and key length of the longest span). With `bf16` (the head
  /// size, and query heads per kv head), room for bf16 products too; without, fp32 only.
  /// One part per kernel thread (`Parallel.width` now, not every core: a thread-rank of one
  /// thread holds one); if `width` grows later, attention runs on as many threads as the
  /// scratch has parts.
  public static func scratchCount(
    queryLength: Int, keyLength: Int, bf16: (headSize: Int, group: Int)? = nil
  ) -> Int {
    partScratch(queryLength: queryLength, keyLength: keyLength, bf16: bf16) * Parallel.width
  }

  /// Scratch of one thread: probabilities and their gradient for one block of rows (fp32),
  /// or what `Blocks` lays out for bf16 products.
  static func partScratch(queryLength: Int, keyLength: Int, bf16: (headSize: Int, group: Int)?) -> Int {
    let rows = min(queryLength, blockRows)
    guard let bf16 else { return 2 * rows * keyLength }
    return Blocks.floats(rows: bf16.group * rows, keys: keyLength, headSize: bf16.headSize)
  }

  /// out = softmax(q·kᵀ/√HS, causal) · v for every sequence and head. With a `window` W
  /// (sliding-window attention, as Mistral v0.1) a query at position t sees keys t − W + 1
  /// through t only.
  /// - out: [B, Tq, H, HS]; q: [B, Tq, H, HS]; k, v: [B, S, KVH, HS] with S = `keyStride` ≥ Tk
  ///   rows per sequence (Tk for activations, the capacity of a KV cache); scratch: see
  ///   `scratchCount`.
  /// - spans: packed sequences covering every row of every row-sequence (nil: one sequence
  ///   per row-sequence); only without a cache or prefix (Tq == Tk).
  public static func forward(
    _ out: Tensor, q: Tensor, k: Tensor, v: Tensor, scratch: Tensor,
    batch: Int, queryLength: Int, keyLength: Int, keyStride: Int, heads: Int, kvHeads: Int, headSize: Int,
    window: Int? = nil, spans: [Span]? = nil, precision: Precision = .f32
  ) {
    PhaseClock.measure(.attention) {
      let g = Geometry(
        batch: batch, queryLength: queryLength, keyLength: keyLength, keyStride: keyStride, heads: heads,
        kvHeads: kvHeads, headSize: headSize, window: window ?? Int.max)
      let units = g.units(spans)
      let part = g.part(units, precision)
      g.check(q: q, k: k, v: v, out: out, scratch: scratch, part: part)
      if precision == .bf16 {
        forwardBF16(out, q: q, k: k, v: v, scratch: scratch, g: g, units: units, part: part)
        return
      }
      let (scratchBase, qs, ks, vs, outs) = (scratch.base, q.base, k.base, v.base, out.base)
      // Threads take whole (sequence, kv head) groups, so no two write the same memory.
      Parallel.forRanges(units.count * kvHeads, maxParts: scratch.count / max(part, 1)) { groups, thread in
        let p = scratchBase + thread * part
        for unit in groups {
          let span = units[unit / kvHeads]
          let (b, s0) = (span.row, span.start)
          for h in (unit % kvHeads) * g.group..<(unit % kvHeads + 1) * g.group {
            for r0 in stride(from: 0, to: span.count, by: blockRows) {
              let rows = min(blockRows, span.count - r0)
              let visible = g.offset + r0 + rows
              g.probabilities(p, q: qs, k: ks, b: b, s0: s0, h: h, r0: r0, rows: rows, visible: visible)
              // out rows [rows, HS] = P [rows, visible] · v_h [visible, HS]
              GEMM.sgemm(
                c: outs + g.qIndex(b, s0 + r0, h), a: p, .none, lda: visible, b: vs + g.kvIndex(b, s0, h),
                .none, ldb: g.kvRow, ldc: g.qRow, m: rows, n: headSize, k: visible, alpha: 1, beta: 0,
                split: false)
            }
          }
        }
      }
    }
  }

  /// Gradients of `forward`: writes dq and adds into dk and dv (kv heads are shared by a
  /// group of query heads, so the caller zeroes dk and dv first).
  /// - dq, dOut: [B, Tq, H, HS]; dk, dv: [B, S, KVH, HS]; other arguments as in `forward`.
  public static func backward(
    dq: Tensor, dk: Tensor, dv: Tensor, dOut: Tensor, q: Tensor, k: Tensor, v: Tensor, scratch: Tensor,
    batch: Int, queryLength: Int, keyLength: Int, keyStride: Int, heads: Int, kvHeads: Int, headSize: Int,
    window: Int? = nil, spans: [Span]? = nil, precision: Precision = .f32
  ) {
    PhaseClock.measure(.attention) {
      let g = Geometry(
        batch: batch, queryLength: queryLength, keyLength: keyLength, keyStride: keyStride, heads: heads,
        kvHeads: kvHeads, headSize: headSize, window: window ?? Int.max)
      let units = g.units(spans)
      let part = g.part(units, precision)
      g.check(q: q, k: k, v: v, out: dOut, scratch: scratch, part: part)
      precondition(
        dq.count == q.count && dk.count == k.count && dv.count == v.count, "attention gradient shapes")
      if precision == .bf16 {
        backwardBF16(
          dq: dq, dk: dk, dv: dv, dOut: dOut, q: q, k: k, v: v, scratch: scratch, g: g, units: units,
          part: part)
        return
      }
      let scale = 1 / Float(headSize).squareRoot()
      let block = part / 2  // fp32 scratch only: two blocks of probabilities
      let (scratchBase, qs, ks, vs) = (scratch.base, q.base, k.base, v.base)
      let (dqs, dks, dvs, dOuts) = (dq.base, dk.base, dv.base, dOut.base)
      // Threads take whole (sequence, kv head) groups: dk and dv of a kv head get every one of
      // its query heads' contributions from one thread.
      Parallel.forRanges(units.count * kvHeads, maxParts: scratch.count / max(part, 1)) { groups, thread in
        let p = scratchBase + thread * part
        let dp = p + block
        for unit in groups {
          let span = units[unit / kvHeads]
          let (b, s0) = (span.row, span.start)
          for h in (unit % kvHeads) * g.group..<(unit % kvHeads + 1) * g.group {
            for r0 in stride(from: 0, to: span.count, by: blockRows) {
              let rows = min(blockRows, span.count - r0)
              let visible = g.offset + r0 + rows
              g.probabilities(p, q: qs, k: ks, b: b, s0: s0, h: h, r0: r0, rows: rows, visible: visible)
              let dOutRows = dOuts + g.qIndex(b, s0 + r0, h)
              let vh = vs + g.kvIndex(b, s0, h)
              let kh = ks + g.kvIndex(b, s0, h)
              // dP [rows, visible] = dOut [rows, HS] · v_hᵀ
              GEMM.sgemm(
                c: dp, a: dOutRows, .none, lda: g.qRow, b: vh, .transposed, ldb: g.kvRow, ldc: visible,
                m: rows, n: visible, k: headSize, alpha: 1, beta: 0, split: false)
              // dv_h [visible, HS] += Pᵀ · dOut
              GEMM.sgemm(
                c: dvs + g.kvIndex(b, s0, h), a: p, .transposed, lda: visible, b: dOutRows, .none,
                ldb: g.qRow,
                ldc: g.kvRow, m: visible, n: headSize, k: rows, alpha: 1, beta: 1, split: false)
              g.softmaxGradient(dp, p: p, rows: rows, visible: visible)
              // dq rows = scale · dS · k_h ; dk_h += scale · dSᵀ · q rows
              GEMM.sgemm(
                c: dqs + g.qIndex(b, s0 + r0, h), a: dp, .none, lda: visible, b: kh, .none, ldb: g.kvRow,
                ldc: g.qRow,
                m: rows, n: headSize, k: visible, alpha: scale, beta: 0, split: false)
              GEMM.sgemm(
                c: dks + g.kvIndex(b, s0, h), a: dp, .transposed, lda: visible,
                b: qs + g.qIndex(b, s0 + r0, h),
                .none,
                ldb: g.qRow, ldc: g.kvRow, m: visible, n: headSize, k: rows, alpha: scale, beta: 1,
                split: false
              )
            }
          }
        }
      }
    }
  }

  /// The sequences attention runs over, without building an array for whole rows.
  struct Units {
    let spans: [Span]?
    let batch, length: Int
    var count: Int { spans?.count ?? batch }
    subscript(i: Int) -> Span { spans?[i] ?? Span(row: i, start: 0, count: length) }
  }

  /// Index arithmetic shared by forward and backward.
  struct Geometry {
    let batch, queryLength, keyLength, keyStride, heads, kvHeads, headSize: Int
    /// Keys a query sees, itself included (Int.max: all earlier ones).
    let window: Int
    var offset: Int { keyLength - queryLength }
    var qRow: Int { heads * headSize }
    var kvRow: Int { kvHeads * headSize }
    var group: Int { heads / kvHeads }

    func qIndex(_ b: Int, _ t: Int, _ h: Int) -> Int { (b * queryLength + t) * qRow + h * headSize }
    func kvIndex(_ b: Int, _ t: Int, _ h: Int) -> Int { (b * keyStride + t) * kvRow + (h / group) * headSize }

    /// One thread's scratch for these units: probabilities and their gradient for a block of
    /// the longest one's rows over its keys.
    func part(_ units: Units, _ precision: Precision) -> Int {
      let (longest, keys) = extent(units)
      return Attention.partScratch(
        queryLength: longest, keyLength: keys, bf16: precision == .bf16 ? (headSize, group) : nil)
    }

    func check(q: Tensor, k: Tensor, v: Tensor, out: Tensor, scratch: Tensor, part: Int) {
      precondition(
        keyLength >= queryLength && keyStride >= keyLength,
        "attention over \(keyLength) keys for \(queryLength) queries")
      precondition(q.count >= batch * queryLength * qRow && out.count == q.count, "attention q/out shapes")
      precondition(k.count >= batch * keyStride * kvRow && v.count == k.count, "attention k/v shapes")
      precondition(scratch.count >= part, "attention scratch too small")
    }

    /// The sequences attention runs over: `spans` (checked to tile every row-sequence, rows
    /// in order), or each row-sequence whole. Allocates nothing.
    func units(_ spans: [Span]?) -> Units {
      guard let spans else { return Units(spans: nil, batch: batch, length: queryLength) }
      precondition(offset == 0, "packed attention runs without a cache or prefix")
      var (row, next) = (0, 0)
      for span in spans {
        if next == queryLength { (row, next) = (row + 1, 0) }
        precondition(
          span.row == row && span.start == next && span.count > 0,
          "attention spans must tile each row in order")
        next += span.count
      }
      precondition(row == batch - 1 && next == queryLength, "attention spans must cover every row")
      return Units(spans: spans, batch: batch, length: queryLength)
    }

    /// Causal softmax probabilities of query rows [r0, r0 + rows) of head h of the sequence
    /// starting at row s0 of row-sequence b, over its keys [0, visible), into p [rows,
    /// visible]; entries past a row's own position, and before its window, are zero.
    func probabilities(
      _ p: UnsafeMutablePointer<Float>, q: UnsafeMutablePointer<Float>, k: UnsafeMutablePointer<Float>,
      b: Int, s0: Int, h: Int, r0: Int, rows: Int, visible: Int
    ) {
      GEMM.sgemm(
        c: p, a: q + qIndex(b, s0 + r0, h), .none, lda: qRow, b: k + kvIndex(b, s0, h), .transposed,
        ldb: kvRow,
        ldc: visible, m: rows, n: visible, k: headSize, alpha: 1 / Float(headSize).squareRoot(), beta: 0,
        split: false)
      softmax(p, r0: r0, rows: rows, visible: visible)
    }

    /// Turns scaled scores p [rows, visible] of query rows [r0, r0 + rows) into causal softmax
    /// probabilities in place, zeroing entries past a row's own position and before its window;
    /// with `rounded`, also writes their bf16 copy there ([rows, visible]) in the same pass.
    /// `fused`: in C with AVX-512, three passes over a row (`sld_softmax_row`), where the CPU
    /// has it; else five SIMD8 passes here.
    func softmax(
      _ p: UnsafeMutablePointer<Float>, r0: Int, rows: Int, visible: Int,
      rounded: UnsafeMutablePointer<UInt16>? = nil, fused: Bool = VectorMath.fusedRows
    ) {
      for i in 0..<rows {
        let row = p + i * visible
        let own = offset + r0 + i + 1
        let first = window < own ? own - window : 0
        if fused {
          sld_softmax_row(row, visible, first, own, rounded.map { $0 + i * visible })
          continue
        }
        let seen = row + first
        let maximum = VectorMath.maximum(seen, count: own - first)
        let sum = VectorMath.exponentiate(seen, count: own - first, shift: maximum)
        row.update(repeating: 0, count: first)
        (row + own).update(repeating: 0, count: visible - own)
        VectorMath.scale(seen, count: own - first, by: Float(1 / sum))
        if let rounded { BFloat16.convert(rounded + i * visible, row, count: visible) }
      }
    }

    /// dS = P ⊙ (dP − Σ_j dP·P) in place of dP [rows, visible], row by row (masked entries of
    /// P are zero); with `rounded`, also its bf16 copy there.
    /// `fused`: in C with AVX-512, two passes over a row (`sld_softmax_gradient_row`).
    func softmaxGradient(
      _ dp: UnsafeMutablePointer<Float>, p: UnsafeMutablePointer<Float>, rows: Int, visible: Int,
      rounded: UnsafeMutablePointer<UInt16>? = nil, fused: Bool = VectorMath.fusedRows
    ) {
      for i in 0..<rows {
        let pr = p + i * visible
        let dr = dp + i * visible
        if fused {
          sld_softmax_gradient_row(dr, pr, visible, rounded.map { $0 + i * visible })
          continue
        }
        let dot = VectorMath.dot(pr, dr, count: visible)
        for j in 0..<visible { dr[j] = pr[j] * (dr[j] - dot) }
        if let rounded { BFloat16.convert(rounded + i * visible, dr, count: visible) }
      }
    }
  }
}
