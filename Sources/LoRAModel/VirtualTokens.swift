import Foundation
import LoRAKernels

/// The prompt- or prefix-tuning part of an adapter: views of its parameters and gradients,
/// which follow the LoRA modules in the adapter's one buffer (so one all-reduce, one
/// optimizer and one checkpoint cover both).
public struct VirtualTokens: @unchecked Sendable {
  /// The reparameterisation MLP of prefix tuning: table = tanh(E·W1ᵀ + b1)·W2ᵀ + b2.
  /// Shapes: w1 [H, KVW], b1 [H], w2 [W, H], b2 [W] (KVW = KVH·HS, W = L·2·KVW), each with its gradient.
  public struct Projection: @unchecked Sendable {
    public let w1, b1, w2, b2: Tensor
    public let gradW1, gradB1, gradW2, gradB2: Tensor
  }

  public let config: VirtualTokenConfig
  /// Where the part starts in the adapter's buffers, and its length.
  public let offset: Int
  public let count: Int
  /// E: prompt [N, D]; prefix without projection: the table itself [N, W]; with: [N, KVW].
  public let embedding: Tensor
  public let gradEmbedding: Tensor
  public let projection: Projection?

  /// The views of `config` on `model` at `offset` of `parameters` and `gradients` (PEFT's
  /// order: embedding, then W1, b1, W2, b2).
  init(config: VirtualTokenConfig, model c: LlamaConfig, parameters: Tensor, gradients: Tensor, offset: Int) {
    self.config = config
    self.offset = offset
    count = config.parameterCount(c)
    let n = config.tokens
    let width = VirtualTokenConfig.prefixWidth(c)
    let embeddingWidth = config.embeddingWidth(c)
    embedding = parameters.view(offset: offset, shape: [n, embeddingWidth])
    gradEmbedding = gradients.view(offset: offset, shape: [n, embeddingWidth])
    if let h = config.projection {
      var at = offset + n * embeddingWidth
      func take(_ shape: [Int]) -> (Tensor, Tensor) {
        defer { at += Tensor.elementCount(shape) }
        return (parameters.view(offset: at, shape: shape), gradients.view(offset: at, shape: shape))
      }
      let (w1, gw1) = take([h, embeddingWidth])
      let (b1, gb1) = take([h])
      let (w2, gw2) = take([width, h])
      let (b2, gb2) = take([width])
      projection = Projection(
        w1: w1, b1: b1, w2: w2, b2: b2, gradW1: gw1, gradB1: gb1, gradW2: gw2, gradB2: gb2)
    } else {
      projection = nil
    }
  }

  /// Draws PEFT's initialisation from `random`: the embedding from N(0, 1) (torch.nn.Embedding),
  /// the projection's weights and biases from U(−1/√in, 1/√in) (torch.nn.Linear).
  /// `LlamaModel.initializeVirtualTokens` replaces the embedding with real-token values.
  func initialize(_ random: inout SeededRandom) {
    random.fillNormal(embedding)
    guard let p = projection else { return }
    for (tensor, fanIn) in [
      (p.w1, p.w1.shape[1]), (p.b1, p.w1.shape[1]), (p.w2, p.w2.shape[1]), (p.b2, p.w2.shape[1]),
    ] {
      random.fillUniform(tensor, bound: 1 / Float(fanIn).squareRoot())
    }
  }
}
