import LoRAKernels

/// Buffers of one forward pass over B sequences of T tokens (N = B·T rows).
///
/// With `keepForBackward` every layer keeps what its backward pass needs: its input (the
/// residual stream), the RMSNorm factors, q and k after RoPE, v, the attention output, the
/// stream after attention, the MLP's gate and up, and each LoRA module's x·Aᵀ. Everything
/// cheaper to recompute than to keep is shared scratch: normalised rows, the SwiGLU output,
/// attention probabilities (recomputed from q and k), dropout masks (regenerated from a
/// seed). Without `keepForBackward` one set serves every layer (inference).
public final class LlamaActivations: @unchecked Sendable {
  /// One layer's kept buffers. Shapes: attentionRMS, mlpRMS [N]; q, attentionOut [N, H·HS];
  /// k, v [N, KVH·HS]; afterAttention [N, D]; gate, up [N, F]; lora[target] [N, R].
  public final class Layer: @unchecked Sendable {
    public let attentionRMS: Tensor
    public let q: Tensor
    public let k: Tensor
    public let v: Tensor
    public let attentionOut: Tensor
    public let afterAttention: Tensor
    public let mlpRMS: Tensor
    public let gate: Tensor
    public let up: Tensor
    /// x·Aᵀ of each adapted linear of this layer, per slot: [rows of the slot, R].
    public let loras: [[LoRATarget: Tensor]]
    /// The first slot's (the only one without fusing).
    public var lora: [LoRATarget: Tensor] { loras.first ?? [:] }
    /// DoRA's z = x·W0ᵀ + s·(x·Aᵀ)·Bᵀ of each adapted linear, per slot whose adapter uses
    /// DoRA: [rows of the slot, OUT] (`DoRA`).
    public let doras: [[LoRATarget: Tensor]]

    init(
      _ c: LlamaConfig, rows n: Int, loras: [[LoRATarget: Tensor]], doras: [[LoRATarget: Tensor]],
      allocate: ([Int]) -> Tensor
    ) {
      attentionRMS = allocate([n])
      q = allocate([n, c.heads * c.headSize])
      k = allocate([n, c.kvHeads * c.headSize])
      v = allocate([n, c.kvHeads * c.headSize])
      attentionOut = allocate([n, c.heads * c.headSize])
      afterAttention = allocate([n, c.hiddenSize])
      mlpRMS = allocate([n])
      gate = allocate([n, c.intermediateSize])
      up = allocate([n, c.intermediateSize])
      self.loras = loras
      self.doras = doras
    }
  }

  /// An adapter and the sequences of the batch it applies to (fused training stacks several
  /// adapters' micro-batches into one batch: every frozen product runs once over all rows,
  /// each low-rank path only over its slot's rows).
  public struct Slot: Sendable {
    public let adapter: LoRAAdapter
    /// Sequences b of the batch (rows b·T ..< (b+1)·T each).
    public let sequences: Range<Int>
    /// A tree node's ancestors, as one adapter whose ΔW is their sum (concatenated ranks):
    /// applied unmerged on the slot's rows, before `adapter`, never trained nor dropped out
    /// (the shared base stays as it is).
    public let frozen: LoRAAdapter?

    /// Whether `frozen` is the adapter's own PiSSA term (`LoRAAdapter.initial`).
    public var isPiSSA: Bool { frozen != nil && frozen === adapter.initial }

    public init(adapter: LoRAAdapter, sequences: Range<Int>, frozen: LoRAAdapter? = nil) {
      self.adapter = adapter
      self.sequences = sequences
      self.frozen = frozen
    }
  }

  public let batch: Int
  /// Rows per sequence: the prompt-tuning rows, then the tokens.
  public let length: Int
  public let keepForBackward: Bool
  /// Prompt tuning: N rows of trained embeddings before each sequence's tokens (0 without).
  public let virtualRows: Int
  /// Prefix tuning: N trained keys and values before each sequence's own in every layer (0 without).
  public let prefixLength: Int
  /// The single slot's virtual tokens, if its adapter has them.
  let virtual: VirtualTokens?
  /// Prefix tuning buffers. table [N, W] (the embedding itself, or the projection's output;
  /// W = L·2·KVH·HS), hidden [N, H] (the projection's tanh), tableGradient [N, W] and
  /// preGradient [N, H] (with a projection and keepForBackward); one layer's keys and values
  /// with the prefix in front, joinedKeys/joinedValues [B·(N+T), KVH·HS], and their gradients
  /// (keepForBackward).
  let prefixTable: Tensor
  let prefixHidden: Tensor
  let prefixTableGradient: Tensor
  let prefixPreGradient: Tensor
  let joinedKeys: Tensor
  let joinedValues: Tensor
  let joinedKeyGradient: Tensor
  let joinedValueGradient: Tensor
  /// The targets with −1 on the prompt rows (rewritten each pass, allocated once).
  var rowTargets: [Int32] = []
  /// Tokens per sequence (`length` without the prompt rows).
  public var tokenLength: Int { length - virtualRows }
  /// Keys attention reads per sequence without a KV cache: the prefix and the rows.
  public var keyLength: Int { prefixLength + length }
  /// Activation checkpointing: only each layer's input is kept; the backward pass reruns a
  /// layer's forward into one shared set of buffers just before its backward (one more
  /// forward pass of compute for a fraction of the memory).
  public let checkpointed: Bool
  /// The adapters whose low-rank products these buffers hold, each on its sequences.
  public let slots: [Slot]
  /// The adapter when there is exactly one slot.
  public var adapter: LoRAAdapter? { slots.count == 1 ? slots[0].adapter : nil }
  let layerBuffers: [Layer]
  /// Residual stream: layer l reads `hidden(l)` and writes `hidden(l + 1)`. [N, D] each.
  let hiddenStates: [Tensor]
  /// Shared scratch: normalised rows [N, D], SwiGLU output [N, F], attention probabilities,
  /// dropped-out LoRA inputs [N, max IN].
  let normed: Tensor
  let activation: Tensor
  let attentionScratch: Tensor
  let dropped: Tensor
  /// DoRA's scratch (with a DoRA slot): a copy of the residual rows a projection adds to
  /// [N, max OUT], and the widened weight rows of `DoRA.rowNorms`; with a PiSSA slot, its
  /// rows' summed low-rank terms [N, max OUT] before they are added.
  let doraScratch: Tensor
  /// Keeps DoRA's norms as the last pass left them (finite differences of the function whose
  /// gradient the backward computes: the norm a constant, as in PEFT).
  var holdNorms = false
  /// The frozen ancestors' x·Aᵀ (forward) and s·dy·B (backward) [N, max R of the chains].
  let chain: Tensor
  /// Final RMSNorm output [N, D] and factors [N].
  public let finalNormed: Tensor
  public let finalRMS: Tensor
  /// Seeds of this pass's LoRA dropout masks, per slot (set by the trainer before each forward).
  public var dropoutSeeds: [UInt64]
  /// The place of each of the batch's sequences in its update's batch (`dropout`'s stream per
  /// sequence; set by the trainer with the seeds), one per row-sequence, or per span when
  /// packed; empty: its index within its slot.
  public var sequenceNumbers: [Int] = []
  /// Packed rows: the sequences each row-sequence holds back to back, in row order, tiling
  /// every row (padding after a row's last sequence is spans of its own). Each span is a
  /// sequence: positions restart at its first row, attention stays within it, and dropout
  /// draws its mask as it would alone. nil: one sequence per row-sequence. Training passes
  /// only (no cache, prefix or prompt rows).
  public var spans: [Attention.Span]? {
    didSet {
      guard let spans else {
        slotSpans = []
        return
      }
      precondition(virtual == nil, "packed rows take no virtual tokens")
      slotSpans = slots.map { slot in
        let mine = spans.indices.filter { slot.sequences.contains(spans[$0].row) }
        return (
          mine,
          mine.map { i in
            let first = (spans[i].row - slot.sequences.lowerBound) * length + spans[i].start
            return first..<first + spans[i].count
          }
        )
      }
    }
  }
  /// Per slot, its spans' indices and their rows within the slot's rows (`dropout`), set
  /// once per pass so that the dropout of every module reuses them.
  private(set) var slotSpans: [(spans: [Int], rows: [Range<Int>])] = []

  /// The rows of each sequence of slot k within the slot's rows (nil, or no slots: of the whole
  /// batch): one range per span when packed (padding spans included, in span order), else one
  /// per row-sequence. Whole-sequence losses (DPO's) are summed over these.
  public func sequenceRows(slot k: Int?) -> [Range<Int>] {
    let length = self.length
    if let k, k < slots.count {
      if spans != nil { return slotSpans[k].rows }
      return (0..<slots[k].sequences.count).map { $0 * length..<($0 + 1) * length }
    }
    guard let spans else { return (0..<batch).map { $0 * length..<($0 + 1) * length } }
    return spans.map { span in
      let first = span.row * length + span.start
      return first..<first + span.count
    }
  }
  /// The first slot's dropout seed.
  public var dropoutSeed: UInt64 {
    get { dropoutSeeds.first ?? 0 }
    set { if dropoutSeeds.isEmpty { dropoutSeeds = [newValue] } else { dropoutSeeds[0] = newValue } }
  }

  /// - keys: keys visible to attention per sequence; T without a KV cache, the cache capacity
  ///   with one.
  /// - arena: where the buffers come from (shared with other sets never used at the same
  ///   time); nil allocates them.
  /// - sequenceLength: packed rows (`spans`): the longest sequence a row holds, which sizes
  ///   attention's scratch (nil: `length`).
  public convenience init(
    config c: LlamaConfig, batch: Int, length: Int, keepForBackward: Bool, keys: Int? = nil,
    adapter: LoRAAdapter? = nil, arena: TensorArena? = nil, checkpointed: Bool = false
  ) {
    self.init(
      config: c, batch: batch, length: length, keepForBackward: keepForBackward, keys: keys,
      slots: adapter.map { [Slot(adapter: $0, sequences: 0..<batch)] } ?? [], arena: arena,
      checkpointed: checkpointed)
  }

  /// Buffers for several adapters, each on its slot of the batch's sequences.
  public init(
    config c: LlamaConfig, batch: Int, length: Int, keepForBackward: Bool, keys: Int? = nil,
    slots: [Slot], arena: TensorArena? = nil, checkpointed: Bool = false, sequenceLength: Int? = nil
  ) {
    precondition(slots.allSatisfy { $0.sequences.lowerBound >= 0 && $0.sequences.upperBound <= batch })
    precondition(
      slots.count <= 1 || slots.allSatisfy { $0.adapter.virtualTokens == nil },
      "virtual tokens are applied to a single adapter's pass, not a fused one")
    self.checkpointed = keepForBackward && checkpointed
    let perLayer = keepForBackward && !checkpointed
    let allocate: ([Int]) -> Tensor = { shape in arena?.tensor(shape) ?? Tensor(zeros: shape) }
    let virtual = slots.first?.adapter.virtualTokens
    self.virtual = virtual
    virtualRows = virtual?.config.kind == .prompt ? virtual!.config.tokens : 0
    prefixLength = virtual?.config.kind == .prefix ? virtual!.config.tokens : 0
    let length = length + virtualRows
    self.batch = batch
    self.length = length
    self.keepForBackward = keepForBackward
    self.slots = slots
    dropoutSeeds = Array(repeating: 0, count: max(slots.count, 1))
    let n = batch * length
    layerBuffers = (0..<(perLayer ? c.layers : 1)).map { l in
      let loras = slots.map { slot in
        var lora: [LoRATarget: Tensor] = [:]
        for target in LoRATarget.allCases {
          // Without keepForBackward one buffer serves every layer: size it for the largest rank.
          let ranks = (perLayer ? [l] : Array(0..<c.layers)).compactMap {
            slot.adapter.module(layer: $0, target: target)?.rank
          }
          if let rank = ranks.max() { lora[target] = allocate([slot.sequences.count * length, rank]) }
        }
        return lora
      }
      let doras = slots.map { slot in
        var dora: [LoRATarget: Tensor] = [:]
        guard slot.adapter.config.useDora else { return dora }
        for target in LoRATarget.allCases {
          let covered = (perLayer ? [l] : Array(0..<c.layers)).contains {
            slot.adapter.module(layer: $0, target: target) != nil
          }
          if covered { dora[target] = allocate([slot.sequences.count * length, target.shape(c).out]) }
        }
        return dora
      }
      return Layer(c, rows: n, loras: loras, doras: doras, allocate: allocate)
    }
    hiddenStates = (0..<(keepForBackward ? c.layers + 1 : 2)).map { _ in allocate([n, c.hiddenSize]) }
    normed = allocate([n, c.hiddenSize])
    activation = allocate([n, c.intermediateSize])
    let sequence = min(length, sequenceLength ?? length)
    attentionScratch = allocate(
      [
        Attention.scratchCount(
          queryLength: sequence, keyLength: keys ?? (prefixLength + sequence),
          bf16: keys == nil ? (c.headSize, c.heads / c.kvHeads) : nil)  // bf16 runs without a cache only
      ])
    let kvWidth = c.kvHeads * c.headSize
    let joined = prefixLength > 0 ? batch * (prefixLength + length) * kvWidth : 0
    let joinedShape = [joined / max(kvWidth, 1), kvWidth]
    joinedKeys = allocate(joinedShape)
    joinedValues = allocate(joinedShape)
    joinedKeyGradient = allocate(keepForBackward ? joinedShape : [0, kvWidth])
    joinedValueGradient = allocate(keepForBackward ? joinedShape : [0, kvWidth])
    let hiddenWidth = virtual?.config.projection ?? 0
    let tableRows = hiddenWidth > 0 ? prefixLength : 0
    prefixTable = allocate([tableRows, VirtualTokenConfig.prefixWidth(c)])
    prefixHidden = allocate([tableRows, hiddenWidth])
    prefixTableGradient = allocate([keepForBackward ? tableRows : 0, VirtualTokenConfig.prefixWidth(c)])
    prefixPreGradient = allocate([keepForBackward ? tableRows : 0, hiddenWidth])
    let widest = max(c.hiddenSize, c.intermediateSize, c.heads * c.headSize)
    dropped = allocate([slots.contains { $0.adapter.config.loraDropout > 0 } ? n * widest : 0])
    let dora = slots.contains { $0.adapter.config.useDora || $0.isPiSSA }
    doraScratch = allocate([dora ? max(n, DoRA.blockRows) * widest : 0])
    chain = allocate([n * (slots.compactMap { $0.frozen?.modules.map(\.rank).max() }.max() ?? 0)])
    finalNormed = allocate([n, c.hiddenSize])
    finalRMS = allocate([n])
  }

  public func layer(_ l: Int) -> Layer { layerBuffers[layerBuffers.count > 1 ? l : 0] }
  public func hidden(_ l: Int) -> Tensor { hiddenStates[keepForBackward ? l : l % 2] }
}

/// Keys and values of past positions, per layer: [B, capacity, KVH·HS] each, RoPE applied.
public final class KVCache: @unchecked Sendable {
  public let batch: Int
  public let capacity: Int
  /// Positions filled so far (the same for every sequence of the batch).
  public internal(set) var length = 0
  let keys: [Tensor]
  let values: [Tensor]

  public init(config c: LlamaConfig, batch: Int, capacity: Int) {
    self.batch = batch
    self.capacity = capacity
    keys = (0..<c.layers).map { _ in Tensor(zeros: [batch, capacity, c.kvHeads * c.headSize]) }
    values = (0..<c.layers).map { _ in Tensor(zeros: [batch, capacity, c.kvHeads * c.headSize]) }
  }

  /// Forgets every position (the buffers are reused).
  public func reset() { length = 0 }
}
