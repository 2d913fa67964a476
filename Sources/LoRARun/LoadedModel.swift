import LoRAComm
import LoRAFormats
import LoRAKernels
import LoRAModel

/// A base model loaded once: its files, tokenizer and weights, shared by the thread-ranks of
/// a process (`--local-ranks`) and, with several ranks on a node, by the node's ranks.
public struct LoadedModel: @unchecked Sendable {
  public var files: ModelFiles
  public var tokenizer: Tokenizer
  public var model: LlamaModel
  public var origin: LlamaModel.Origin

  /// Loads `path` with its matrices held in `precision` (resolved here: `auto` is bf16 on
  /// CPUs with native bf16) and attention's products in `attention`; with a multi-rank
  /// `communicator`, the ranks of each node share one copy of the converted weights (the
  /// node's first rank fills it).
  public init(
    path: String, communicator: (any Communicator)? = nil, precision: BasePrecision = .f32,
    attention: AttentionPrecision = .auto
  ) throws {
    files = try ModelFiles.open(path)
    tokenizer = try Tokenizer.load(files)
    (model, origin) = try Self.weights(
      files, communicator: communicator, precision: precision, attention: attention)
  }

  /// The model alone, without its tokenizer (`bench` trains on random ids, so it runs on
  /// weights that come without one), shared per node as above.
  public static func weights(
    _ files: ModelFiles, communicator: (any Communicator)? = nil, precision: BasePrecision = .f32,
    attention: AttentionPrecision = .auto
  ) throws -> (
    model: LlamaModel, origin: LlamaModel.Origin
  ) {
    var storage: WeightStorage?
    if let communicator, communicator.size > 1 {
      let shared = SharedBox()
      storage = WeightStorage(
        allocate: { count in
          let buffer = try communicator.nodeSharedBuffer(count: count)
          shared.buffer = buffer
          return (buffer.tensor, buffer.filler)
        },
        ready: { try shared.buffer?.ready() })
    }
    let attentionPrecision = try attention.resolve()
    let loaded = try LlamaModel.load(files, storage: storage, precision: precision.resolve())
    loaded.model.attentionPrecision = attentionPrecision
    return loaded
  }

  /// The token that pads batches: the tokenizer's pad token, else its end of sequence.
  public var padID: Int32 { Int32(tokenizer.padID ?? tokenizer.eosID ?? 0) }
}

/// Holds the node-shared buffer between its allocation and the barrier after filling it.
private final class SharedBox: @unchecked Sendable {
  var buffer: NodeSharedBuffer?
}
