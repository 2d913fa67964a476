import Foundation
import LoRAKernels

/// A sequence being generated: its own KV cache (one sequence, its own length) and the
/// adapter its rows use (nil: the base alone).
public final class DecodeSequence: @unchecked Sendable {
  public let adapter: LoRAAdapter?
  public let cache: KVCache
  /// Positions filled (prompt plus generated tokens fed back).
  public var length: Int { cache.length }
  public var capacity: Int { cache.capacity }

  public init(config: LlamaConfig, adapter: LoRAAdapter?, capacity: Int) {
    self.adapter = adapter
    cache = KVCache(config: config, batch: 1, capacity: capacity)
  }
}

/// One decoding step for many sequences at once, each with its own adapter, cache and position.
///
/// Every frozen product runs once over all B rows (`RowInvariantGEMM`: a row's result does
/// not depend on the other rows, so a request gives the same tokens alone and in any batch);
/// each adapter's low-rank terms are applied to the contiguous segment of rows that uses it
/// (the SGMV idea), one row at a time, so they are batch-invariant too. Attention reads each
/// sequence's own cache. `prefill` runs a prompt alone (the ordinary batched forward pass).
public final class BatchDecoder: @unchecked Sendable {
  public let model: LlamaModel
  public let maxRows: Int
  let products: RowInvariantGEMM
  // Buffers for maxRows rows (views of the first B rows are used each step).
  let x: Tensor  // [B, D] residual stream
  let normed: Tensor  // [B, D]
  let rms: Tensor  // [B]
  let q: Tensor  // [B, H·HS]
  let k: Tensor  // [B, KVH·HS]
  let v: Tensor  // [B, KVH·HS]
  let attention: Tensor  // [B, H·HS]
  let gate: Tensor  // [B, F]
  let up: Tensor  // [B, F]
  let activation: Tensor  // [B, F]
  let finalNormed: Tensor  // [B, D]
  let logitRows: Tensor  // [B, V]
  let u: Tensor  // [R max] one row's x·Aᵀ
  let residual: Tensor  // [B, max OUT] DoRA: the rows a projection accumulates into
  let z: Tensor  // [1, max OUT] DoRA: one row's x·W0ᵀ + s·(x·Aᵀ)·Bᵀ
  let attentionScratch: Tensor
  let prefillLogits: Tensor  // [1, V]

  /// - maxRows: the most sequences one step may hold; `maxRank`: the largest adapter rank;
  ///   `blockRows`: rows per frozen product call (nil: `SWIFT_LORA_DIST_DECODE_BLOCK`, else 1;
  ///   see `RowInvariantGEMM`).
  public init(model: LlamaModel, maxRows: Int, maxRank: Int = 256, blockRows: Int? = nil) {
    let c = model.config
    self.model = model
    self.maxRows = maxRows
    let (qw, kvw) = (c.heads * c.headSize, c.kvHeads * c.headSize)
    let shapes = [
      (qw, c.hiddenSize), (kvw, c.hiddenSize), (c.hiddenSize, qw), (c.intermediateSize, c.hiddenSize),
      (c.hiddenSize, c.intermediateSize), (c.vocabularySize, c.hiddenSize),
    ]
    let block: Int
    switch blockRows.map(String.init) ?? BatchDecoder.blockRowsSetting {
    case "auto": block = BatchDecoder.probedBlockRows(shapes: shapes)
    case let value: block = Int(value).flatMap { $0 >= 1 ? $0 : nil } ?? 1
    }
    products = RowInvariantGEMM(blockRows: block, maxInput: max(c.hiddenSize, c.intermediateSize, qw))
    x = Tensor(zeros: [maxRows, c.hiddenSize])
    normed = Tensor(zeros: [maxRows, c.hiddenSize])
    rms = Tensor(zeros: [maxRows])
    q = Tensor(zeros: [maxRows, qw])
    k = Tensor(zeros: [maxRows, kvw])
    v = Tensor(zeros: [maxRows, kvw])
    attention = Tensor(zeros: [maxRows, qw])
    gate = Tensor(zeros: [maxRows, c.intermediateSize])
    up = Tensor(zeros: [maxRows, c.intermediateSize])
    activation = Tensor(zeros: [maxRows, c.intermediateSize])
    finalNormed = Tensor(zeros: [maxRows, c.hiddenSize])
    logitRows = Tensor(zeros: [maxRows, c.vocabularySize])
    u = Tensor(zeros: [1, maxRank])
    let widest = max(c.hiddenSize, c.intermediateSize, qw)
    residual = Tensor(zeros: [maxRows, widest])
    z = Tensor(zeros: [1, widest])
    attentionScratch = Tensor(
      zeros: [
        Attention.scratchCount(queryLength: 1, keyLength: min(c.contextLength, model.rope.maxPositions))
      ])
    prefillLogits = Tensor(zeros: [1, c.vocabularySize])
  }

  /// Rows per frozen product call the decoder uses.
  public var blockRows: Int { products.blockRows }

  /// Rows per frozen product call when the caller gives none: `SWIFT_LORA_DIST_DECODE_BLOCK`
  /// (a number, or "auto" for the largest block the BLAS kernel keeps row-invariant), else 1
  /// (one matrix-vector product per row and column chunk: invariant on every CPU, and the
  /// fastest below about 16 rows; docs/serving.md has the figures).
  static let blockRowsSetting = ProcessInfo.processInfo.environment["SWIFT_LORA_DIST_DECODE_BLOCK"] ?? "1"

  nonisolated(unsafe) private static var probed: [String: Int] = [:]
  private static let probeLock = NSLock()

  /// The probe's answer, once per set of shapes in a process.
  static func probedBlockRows(shapes: [(Int, Int)]) -> Int {
    let key = shapes.map { "\($0.0)x\($0.1)" }.joined(separator: ",")
    return probeLock.withLock {
      if let known = probed[key] { return known }
      let value = RowInvariantGEMM.probeBlockRows(shapes: shapes.map { (n: $0.0, k: $0.1) })
      probed[key] = value
      return value
    }
  }

  /// Runs `prompt` through the model into `sequence`'s empty cache and returns the logits of
  /// its last position: [1, V] (valid until the next call).
  /// An adapter's virtual tokens (prompt or prefix tuning) open the cache first.
  public func prefill(_ sequence: DecodeSequence, prompt: [Int32]) -> Tensor {
    let virtual = sequence.adapter?.virtualPositions ?? 0
    precondition(
      !prompt.isEmpty && virtual + prompt.count <= sequence.capacity, "prompt of \(prompt.count) tokens")
    sequence.cache.reset()
    let pass = LlamaActivations(
      config: model.config, batch: 1, length: prompt.count, keepForBackward: false, keys: sequence.capacity,
      adapter: sequence.adapter)
    let hidden = model.forward(tokens: prompt, activations: pass, cache: sequence.cache)
    let last = hidden.view(
      offset: (pass.length - 1) * model.config.hiddenSize, shape: [1, model.config.hiddenSize])
    products.multiply(into: prefillLogits, last, model.weights.output)
    return prefillLogits
  }

  /// Feeds `tokens[i]` to `sequences[i]` (each must have room for one more position) and
  /// returns the next-token logits: [B, V], row i for sequence i (valid until the next call).
  /// Rows of one adapter are best adjacent: each run of equal adapters is one segment.
  public func step(_ sequences: [DecodeSequence], tokens: [Int32]) -> Tensor {
    let c = model.config
    let batch = sequences.count
    precondition(batch == tokens.count && batch >= 1 && batch <= maxRows, "step of \(batch) rows")
    for s in sequences { precondition(s.length < s.capacity, "a sequence's KV cache is full") }
    let rows = { (t: Tensor) in t.view(offset: 0, shape: [batch, t.shape[1]]) }
    let (x, normed, q, k, v) = (rows(self.x), rows(self.normed), rows(self.q), rows(self.k), rows(self.v))
    let (attention, gate, up, activation) = (
      rows(self.attention), rows(self.gate), rows(self.up), rows(self.activation)
    )
    let rms = self.rms.view(offset: 0, shape: [batch])
    let positions = sequences.map(\.length)
    let segments = BatchDecoder.segments(sequences)
    let eps = Float(c.rmsNormEps)
    let kvWidth = c.kvHeads * c.headSize

    Embedding.forward(x, table: model.weights.embedding, ids: tokens)
    for l in 0..<c.layers {
      let w = model.weights.layers[l]
      RMSNorm.forward(normed, reciprocalRMS: rms, x, weight: w.attentionNorm, eps: eps)
      project(q, normed, w.q, w.qBias, l, .q, segments)
      project(k, normed, w.k, w.kBias, l, .k, segments)
      project(v, normed, w.v, w.vBias, l, .v, segments)
      model.rope.forward(q, heads: c.heads, positions: positions)
      model.rope.forward(k, heads: c.kvHeads, positions: positions)
      for (i, s) in sequences.enumerated() {
        let at = positions[i] * kvWidth
        s.cache.keys[l].view(offset: at, shape: [1, kvWidth]).copy(
          from: k.view(offset: i * kvWidth, shape: [1, kvWidth]))
        s.cache.values[l].view(offset: at, shape: [1, kvWidth]).copy(
          from: v.view(offset: i * kvWidth, shape: [1, kvWidth]))
        let qWidth = c.heads * c.headSize
        Attention.forward(
          attention.view(offset: i * qWidth, shape: [1, qWidth]),
          q: q.view(offset: i * qWidth, shape: [1, qWidth]),
          k: s.cache.keys[l], v: s.cache.values[l], scratch: attentionScratch, batch: 1, queryLength: 1,
          keyLength: positions[i] + 1, keyStride: s.capacity, heads: c.heads, kvHeads: c.kvHeads,
          headSize: c.headSize, window: c.slidingWindow)
      }
      // x += attention · Woᵀ (+ LoRA)
      project(x, attention, w.o, nil, l, .o, segments, accumulate: true)
      RMSNorm.forward(normed, reciprocalRMS: rms, x, weight: w.mlpNorm, eps: eps)
      project(gate, normed, w.gate, nil, l, .gate, segments)
      project(up, normed, w.up, nil, l, .up, segments)
      SwiGLU.forward(activation, gate: gate, up: up)
      project(x, activation, w.down, nil, l, .down, segments, accumulate: true)
    }
    for s in sequences { s.cache.length += 1 }
    let finalNormed = rows(self.finalNormed)
    RMSNorm.forward(finalNormed, reciprocalRMS: rms, x, weight: model.weights.finalNorm, eps: eps)
    let logits = rows(logitRows)
    products.multiply(into: logits, finalNormed, model.weights.output)
    return logits
  }

  /// Runs of adjacent rows that share an adapter: (adapter, rows).
  static func segments(_ sequences: [DecodeSequence]) -> [(adapter: LoRAAdapter, rows: Range<Int>)] {
    var result: [(adapter: LoRAAdapter, rows: Range<Int>)] = []
    var start = 0
    for i in 1...sequences.count {
      if i == sequences.count || sequences[i].adapter !== sequences[start].adapter {
        if let adapter = sequences[start].adapter { result.append((adapter, start..<i)) }
        start = i
      }
    }
    return result
  }

  /// out (=|+=) x·Wᵀ (+ bias), then s·(x·Aᵀ)·Bᵀ added on each segment's rows, one row at a
  /// time (a DoRA adapter's rows: residual + g ⊙ (x·W0ᵀ + s·(x·Aᵀ)·Bᵀ), with the norms of its
  /// prefill, `LlamaModel.forward`).
  /// - out: [B, OUT]; x: [B, IN]; weight: [OUT, IN].
  private func project(
    _ out: Tensor, _ x: Tensor, _ weight: FrozenMatrix, _ bias: Tensor?, _ layer: Int, _ target: LoRATarget,
    _ segments: [(adapter: LoRAAdapter, rows: Range<Int>)], accumulate: Bool = false
  ) {
    let (width, input) = (out.shape[1], x.shape[1])
    let dora = segments.filter { $0.adapter.module(layer: layer, target: target)?.norm != nil }
    if accumulate {
      for (_, rows) in dora {
        residual.view(offset: rows.lowerBound * width, shape: [rows.count, width]).copy(
          from: out.view(offset: rows.lowerBound * width, shape: [rows.count, width]))
      }
    }
    products.multiply(into: out, x, weight, accumulate: accumulate)
    for (adapter, rows) in dora {
      let m = adapter.module(layer: layer, target: target)!
      let (ur, zr) = (u.view(offset: 0, shape: [1, m.rank]), z.view(offset: 0, shape: [1, width]))
      for r in rows {
        let row = out.view(offset: r * width, shape: [1, width])
        let kept = accumulate ? residual.view(offset: r * width, shape: [1, width]) : nil
        zr.copy(from: row)
        if let kept { zr.subtract(kept) }
        LowRank.forward(
          zr, u: ur, x: x.view(offset: r * input, shape: [1, input]), a: m.a, b: m.b, scale: m.scale)
        DoRA.combine(row, residual: kept, z: zr, magnitude: m.magnitude!, norms: m.norm!)
      }
    }
    if let bias { Linear.addBias(out, bias) }
    for (adapter, rows) in segments {
      guard let m = adapter.module(layer: layer, target: target), m.norm == nil else { continue }
      let ur = u.view(offset: 0, shape: [1, m.rank])
      for r in rows {
        LowRank.forward(
          out.view(offset: r * width, shape: [1, width]), u: ur,
          x: x.view(offset: r * input, shape: [1, input]),
          a: m.a, b: m.b, scale: m.scale)
      }
    }
  }
}
