import LoRAModel

/// How an update's global batch is divided over the ranks and into micro-batches. Either
/// way every unit (a sequence, or a DPO pair) of the batch is trained once, the loss is
/// scaled by the whole batch's trained tokens, and a sequence's dropout masks depend only on
/// its place in the batch: the summed gradient is the same, so ranks and micro-batches change
/// nothing but the order of a floating-point sum.
public enum BatchBalance: String, Codable, CaseIterable, Sendable {
  /// Each rank gets units of about equal work, counted as the passes will run them
  /// (``SequenceCost`` of the padded micro-batches; `TokenSplit`). A rank's units run
  /// longest first, so micro-batches hold sequences of similar length and little padding.
  case tokens
  /// Each rank gets an equal count of consecutive units, in the sampler's order (as before
  /// token balancing).
  case sequences

  /// One unit of a batch (a sequence, or a DPO pair): its sequences' lengths and trained tokens.
  public struct Unit: Sendable, Equatable {
    public var lengths: [Int]
    public var trained: Int
    public init(lengths: [Int], trained: Int) {
      self.lengths = lengths
      self.trained = trained
    }
    var longest: Int { lengths.max() ?? 0 }
  }

  /// Which of the batch's `units` (in batch order) each of `ranks` ranks trains, in the order
  /// its micro-batches take them: ``tokens`` (passes of at most `rows` padded rows) or
  /// ``sequences``. The same on every rank.
  /// - Precondition: for `sequences`, `units.count` divides by `ranks`.
  /// With `packed` (padding-free passes), a pass costs its tokens (in one row, padded to 8).
  public func assign(
    units: [Unit], ranks: Int, rows: Int, extra: Int = 0, packed: Bool = false, longest: Int = .max,
    cost: SequenceCost
  ) -> [[Int]] {
    let ranks = max(ranks, 1)
    switch self {
    case .sequences:
      let per = units.count / ranks
      return (0..<ranks).map { Array($0 * per..<($0 + 1) * per) }
    case .tokens:
      return TokenSplit(units: units, rows: rows, extra: extra, packed: packed, longest: longest, cost: cost)
        .split(
          ranks: ranks)
    }
  }

  /// How a rank's units, in running order (longest first), are cut into passes: with
  /// ``sequences``, `microBatch` units each; with ``tokens``, as many consecutive units as fit
  /// in `rows` padded rows (sequences × (the first unit's padded length + `extra`, a virtual
  /// token adapter's rows or keys per sequence)), so short sequences share a pass and a pass
  /// never holds more rows than `microBatch` of the longest would.
  /// With `packed`, a unit's sequences are laid end to end, and a pass takes units while
  /// their tokens (padded to a multiple of 8) fit in `rows`.
  /// - shapes: each unit's (longest sequence, sequences, tokens); ranges of it per pass.
  /// - longest: the run's longest sequence, which caps a padded row (`Batch.bucketLength`).
  public func passes(
    _ shapes: [(longest: Int, sequences: Int, tokens: Int)], microBatch: Int, rows: Int, extra: Int = 0,
    packed: Bool = false, longest: Int = .max
  ) -> [Range<Int>] {
    var result: [Range<Int>] = []
    var start = 0
    while start < shapes.count {
      var end = start + 1
      switch self {
      case .sequences: end = min(start + max(microBatch, 1), shapes.count)
      case .tokens where packed:
        var tokens = shapes[start].tokens
        while end < shapes.count && Batch.bucketLength(tokens + shapes[end].tokens, longest: .max) <= rows {
          tokens += shapes[end].tokens
          end += 1
        }
      case .tokens:
        let length = Batch.bucketLength(shapes[start].longest, longest: longest) + extra
        var sequences = shapes[start].sequences
        while end < shapes.count && (sequences + shapes[end].sequences) * length <= rows {
          sequences += shapes[end].sequences
          end += 1
        }
      }
      result.append(start..<end)
      start = end
    }
    return result
  }
}

/// The work of training on one sequence, in FLOPs of one update: every token through the
/// layers' frozen products (forward and input gradient), every trained token through the
/// output head (the loss runs on trained rows only), and attention over each token's visible
/// keys (causal: n·(n+1)/2 pairs); and of each pass (micro-batch), what the products cost
/// whatever their rows. The LoRA products are small beside these and scale with the tokens,
/// so they are left out.
///
/// Two weights are measured rather than counted (`bench`'s phases on SmolLM2-135M, one core,
/// batch 1–4 × 32–96 tokens; docs/benchmarks.md): attention runs at a fifth to a sixth of
/// the products' FLOP rate (per-head products of T × T, the softmax between), and a pass costs
/// about as much as 16 more rows through the layers and the head (each product packs or
/// widens its whole weight, however few rows it multiplies).
public struct SequenceCost: Sendable {
  /// FLOPs per token through the layers, per trained token through the head, per pair of
  /// attention (query, key), and per pass.
  public let perToken: Double
  public let perTrainedToken: Double
  public let perPair: Double
  public let perPass: Double

  /// Rows a pass costs besides its own.
  public static let rowsPerPass = 16.0
  /// How many times slower attention's FLOPs run than the products'.
  public static let attentionSlowdown = 6.0

  public init(config c: LlamaConfig) {
    let q = c.heads * c.headSize
    let kv = c.kvHeads * c.headSize
    let perLayer = c.hiddenSize * (2 * q + 2 * kv) + 3 * c.hiddenSize * c.intermediateSize
    perToken = 4 * Double(c.layers * perLayer)
    perTrainedToken = 4 * Double(c.vocabularySize * c.hiddenSize)
    // Scores and the weighted sum, forward (2 × 2 FLOPs a pair per head dimension) and backward (twice that).
    perPair = Self.attentionSlowdown * 12 * Double(c.layers * q)
    perPass = Self.rowsPerPass * (perToken + perTrainedToken)
  }

  /// A cost of given weights (tests, other models of the work).
  public init(perToken: Double, perTrainedToken: Double, perPair: Double, perPass: Double = 0) {
    self.perToken = perToken
    self.perTrainedToken = perTrainedToken
    self.perPair = perPair
    self.perPass = perPass
  }

  /// The cost of `example` alone, unpadded.
  public func of(_ example: Example) -> Double {
    of(sequences: 1, paddedTo: example.tokens.count, trained: example.trainedCount)
  }

  /// The cost of a packed pass (padding-free): `rows` rows of `length` tokens through the
  /// products, attention within each sequence of `lengths`, `trained` trained tokens.
  public func ofPacked(rows: Int, length: Int, lengths: [Int], trained: Int) -> Double {
    perToken * Double(rows * length) + perTrainedToken * Double(trained)
      + perPair * lengths.reduce(0) { $0 + Double($1) * Double($1 + 1) / 2 }
  }

  /// The cost of `sequences` rows padded to `length` tokens (padding runs through every
  /// product and attention as real tokens do) with `trained` trained tokens in all.
  public func of(sequences: Int, paddedTo length: Int, trained: Int) -> Double {
    let n = Double(length)
    return Double(sequences) * (perToken * n + perPair * n * (n + 1) / 2) + perTrainedToken * Double(trained)
  }
}
