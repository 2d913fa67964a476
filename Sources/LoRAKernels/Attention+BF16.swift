import Foundation

/// Attention with bf16 products (`precision: .bf16`): the same blocks of query rows as the
/// fp32 path, each product through oneDNN (`BF16GEMM`) on bf16 copies of its operands,
/// accumulating in fp32. The softmax, its gradient and every output stay fp32; dk and dv
/// accumulate in fp32.
///
/// The G query heads that share a kv head are stacked: a block's rows of all G heads form
/// one [G·rows, HS] operand against the kv head's keys and values, so each block is one
/// product per step instead of G, and dk and dv sum over the G heads inside one product.
/// Per (sequence, kv head) unit a thread rounds the keys and values to bf16 once; per block
/// the G heads' query rows (and dOut's rows); the probabilities and their gradient are
/// rounded in the pass that makes them.
extension Attention {
  /// One thread's scratch for stacked blocks of `rows` = G·block rows over `keys` keys:
  /// fp32 P, dP [rows, keys] and a product's rows O [rows, HS]; then bf16 k̃, ṽ [keys, HS],
  /// q̃, dÕ [rows, HS] and P̃ [rows, keys].
  struct Blocks {
    let p, dp, o: UnsafeMutablePointer<Float>
    let halves: UnsafeMutablePointer<Float>
    let halfCount: Int

    static func floats(rows: Int, keys: Int, headSize: Int) -> Int {
      2 * rows * keys + rows * headSize + (halfCount(rows: rows, keys: keys, headSize: headSize) + 1) / 2
    }

    static func halfCount(rows: Int, keys: Int, headSize: Int) -> Int {
      2 * keys * headSize + 2 * rows * headSize + rows * keys
    }

    init(_ base: UnsafeMutablePointer<Float>, rows: Int, keys: Int, headSize: Int) {
      p = base
      dp = p + rows * keys
      o = dp + rows * keys
      halves = o + rows * headSize
      halfCount = Self.halfCount(rows: rows, keys: keys, headSize: headSize)
    }
  }

  /// The bf16 part of `Blocks`.
  struct Halves {
    let k, v, q, dOut, p: UnsafeMutablePointer<UInt16>

    init(_ base: UnsafeMutablePointer<UInt16>, rows: Int, keys: Int, headSize: Int) {
      k = base
      v = k + keys * headSize
      q = v + keys * headSize
      dOut = q + rows * headSize
      p = dOut + rows * headSize
    }
  }

  /// `forward` with bf16 products over `units` (scratch already checked for `part`).
  static func forwardBF16(
    _ out: Tensor, q: Tensor, k: Tensor, v: Tensor, scratch: Tensor, g: Geometry, units: Units, part: Int
  ) {
    let (scratchBase, qs, ks, vs, outs) = (scratch.base, q.base, k.base, v.base, out.base)
    let (hs, scale) = (g.headSize, 1 / Float(g.headSize).squareRoot())
    Parallel.forRanges(units.count * g.kvHeads, maxParts: scratch.count / max(part, 1)) { groups, thread in
      withBlocks(scratchBase + thread * part, g, units) { s, h16 in
        eachBlock(groups, units, g, k: ks, v: vs, h16) { x in
          for j in 0..<g.group {
            convertRows(
              h16.q + j * x.rows * hs, qs + g.qIndex(x.b, x.t, x.first + j), rows: x.rows, width: hs,
              stride: g.qRow)
          }
          // P [G·rows, visible] = softmax(scale · q̃ · k̃ᵀ), and P̃
          product(
            s.p, ldc: x.visible, h16.q, .none, lda: hs, h16.k, .transposed, ldb: hs, x.stacked, x.visible, hs,
            scale)
          g.stackedSoftmax(s.p, rounded: h16.p, r0: x.r0, rows: x.rows, visible: x.visible)
          // O [G·rows, HS] = P̃ · ṽ, each head's rows to its place in out
          product(s.o, ldc: hs, h16.p, .none, lda: x.visible, h16.v, .none, ldb: hs, x.stacked, hs, x.visible)
          g.scatter(s.o, to: outs, b: x.b, t: x.t, firstHead: x.first, rows: x.rows)
        }
      }
    }
  }

  /// `backward` with bf16 products over `units` (dk and dv zeroed by the caller).
  static func backwardBF16(
    dq: Tensor, dk: Tensor, dv: Tensor, dOut: Tensor, q: Tensor, k: Tensor, v: Tensor, scratch: Tensor,
    g: Geometry, units: Units, part: Int
  ) {
    let (scratchBase, qs, ks, vs) = (scratch.base, q.base, k.base, v.base)
    let (dqs, dks, dvs, dOuts) = (dq.base, dk.base, dv.base, dOut.base)
    let (hs, scale) = (g.headSize, 1 / Float(g.headSize).squareRoot())
    // Threads take whole (sequence, kv head) groups: dk and dv of a kv head get every one of
    // its query heads' contributions from one thread.
    Parallel.forRanges(units.count * g.kvHeads, maxParts: scratch.count / max(part, 1)) { groups, thread in
      withBlocks(scratchBase + thread * part, g, units) { s, h16 in
        eachBlock(groups, units, g, k: ks, v: vs, h16) { x in
          for j in 0..<g.group {
            let at = g.qIndex(x.b, x.t, x.first + j)
            convertRows(h16.q + j * x.rows * hs, qs + at, rows: x.rows, width: hs, stride: g.qRow)
            convertRows(h16.dOut + j * x.rows * hs, dOuts + at, rows: x.rows, width: hs, stride: g.qRow)
          }
          let (stacked, visible) = (x.stacked, x.visible)
          product(
            s.p, ldc: visible, h16.q, .none, lda: hs, h16.k, .transposed, ldb: hs, stacked, visible, hs, scale
          )
          g.stackedSoftmax(s.p, rounded: h16.p, r0: x.r0, rows: x.rows, visible: visible)
          // dP [G·rows, visible] = dÕ · ṽᵀ ; dv [visible, HS] += P̃ᵀ · dÕ (summed over the G heads)
          product(
            s.dp, ldc: visible, h16.dOut, .none, lda: hs, h16.v, .transposed, ldb: hs, stacked, visible, hs)
          product(
            dvs + x.kvAt, ldc: g.kvRow, h16.p, .transposed, lda: visible, h16.dOut, .none, ldb: hs, visible,
            hs,
            stacked, 1, beta: 1)
          // dS̃ (over P̃, which dv has read) = bf16 of P ⊙ (dP − Σ_j dP·P)
          g.softmaxGradient(s.dp, p: s.p, rows: stacked, visible: visible, rounded: h16.p)
          // dq rows = scale · dS̃ · k̃ ; dk [visible, HS] += scale · dS̃ᵀ · q̃
          product(
            s.o, ldc: hs, h16.p, .none, lda: visible, h16.k, .none, ldb: hs, stacked, hs, visible, scale)
          g.scatter(s.o, to: dqs, b: x.b, t: x.t, firstHead: x.first, rows: x.rows)
          product(
            dks + x.kvAt, ldc: g.kvRow, h16.p, .transposed, lda: visible, h16.q, .none, ldb: hs, visible, hs,
            stacked, scale, beta: 1)
        }
      }
    }
  }

  /// One block of query rows of one unit and kv head.
  struct Block {
    /// Row-sequence, the block's first row, the group's first query head, the index of the
    /// unit's first key of its kv head.
    let b, t, first, kvAt: Int
    /// The block's first row within its sequence, its rows, G·rows, and the keys it sees.
    let r0, rows, stacked, visible: Int
  }

  /// Runs `body` for every block of the (unit, kv head) indices `groups`, after rounding each
  /// unit's keys and values into `h16.k` and `h16.v`.
  private static func eachBlock(
    _ groups: Range<Int>, _ units: Units, _ g: Geometry, k: UnsafeMutablePointer<Float>,
    v: UnsafeMutablePointer<Float>, _ h16: Halves, _ body: (Block) -> Void
  ) {
    for unit in groups {
      let span = units[unit / g.kvHeads]
      let first = (unit % g.kvHeads) * g.group
      let kvAt = g.kvIndex(span.row, span.start, first)
      convertRows(h16.k, k + kvAt, rows: g.offset + span.count, width: g.headSize, stride: g.kvRow)
      convertRows(h16.v, v + kvAt, rows: g.offset + span.count, width: g.headSize, stride: g.kvRow)
      for r0 in stride(from: 0, to: span.count, by: blockRows) {
        let rows = min(blockRows, span.count - r0)
        body(
          Block(
            b: span.row, t: span.start + r0, first: first, kvAt: kvAt, r0: r0, rows: rows,
            stacked: g.group * rows,
            visible: g.offset + r0 + rows))
      }
    }
  }

  /// Runs `body` over this thread's scratch, laid out from `start` for `units`' longest.
  private static func withBlocks(
    _ start: UnsafeMutablePointer<Float>, _ g: Geometry, _ units: Units, _ body: (Blocks, Halves) -> Void
  ) {
    let (longest, keys) = g.extent(units)
    let rows = g.group * min(longest, blockRows)
    let blocks = Blocks(start, rows: rows, keys: keys, headSize: g.headSize)
    blocks.halves.withMemoryRebound(to: UInt16.self, capacity: blocks.halfCount) { base in
      body(blocks, Halves(base, rows: rows, keys: keys, headSize: g.headSize))
    }
  }

  /// dst [rows, width] (contiguous) = bf16 of src's rows, `stride` floats apart.
  private static func convertRows(
    _ dst: UnsafeMutablePointer<UInt16>, _ src: UnsafePointer<Float>, rows: Int, width: Int, stride: Int
  ) {
    for r in 0..<rows { BFloat16.convert(dst + r * width, src + r * stride, count: width) }
  }

  /// One bf16 product; oneDNN failing here is a fault (bf16 attention is chosen only where
  /// `bf16Available` probed these products), not bad input.
  private static func product(
    _ c: UnsafeMutablePointer<Float>, ldc: Int, _ a: UnsafePointer<UInt16>, _ opA: Transpose, lda: Int,
    _ b: UnsafePointer<UInt16>, _ opB: Transpose, ldb: Int, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float = 1,
    beta: Float = 0
  ) {
    do {
      try BF16GEMM.multiply(
        c: c, ldc: ldc, a: a, opA, lda: lda, b: b, opB, ldb: ldb, m: m, n: n, k: k, alpha: alpha, beta: beta)
    } catch {
      preconditionFailure("\(error)")
    }
  }
}

extension Attention.Geometry {
  /// The longest unit's query rows and the keys it sees: what a thread's scratch is laid out
  /// for.
  func extent(_ units: Attention.Units) -> (longest: Int, keys: Int) {
    var longest = 0
    for i in 0..<units.count { longest = max(longest, units[i].count) }
    return (longest, offset + longest)
  }

  /// `softmax` of G stacked blocks of `rows` rows each (the same positions, one block per
  /// query head), writing their bf16 copy to `rounded`.
  func stackedSoftmax(
    _ p: UnsafeMutablePointer<Float>, rounded: UnsafeMutablePointer<UInt16>, r0: Int, rows: Int, visible: Int
  ) {
    for j in 0..<group {
      softmax(
        p + j * rows * visible, r0: r0, rows: rows, visible: visible, rounded: rounded + j * rows * visible)
    }
  }

  /// Copies G stacked blocks o [G·rows, HS] to rows [t, t + rows) of heads firstHead… of
  /// row-sequence b in `dst` ([B, Tq, H, HS]).
  func scatter(
    _ o: UnsafeMutablePointer<Float>, to dst: UnsafeMutablePointer<Float>, b: Int, t: Int, firstHead: Int,
    rows: Int
  ) {
    for j in 0..<group {
      for i in 0..<rows {
        (dst + qIndex(b, t + i, firstHead + j)).update(from: o + (j * rows + i) * headSize, count: headSize)
      }
    }
  }
}
