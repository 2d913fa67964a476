import LoRAModel

/// Picks an adapter for a prompt (`model: "auto"`): the one whose route signature is most
/// similar (cosine) to the prompt's mean last hidden state under the base, or none (the
/// base alone) when the best similarity is below `threshold`.
public struct Router: Sendable {
  public var threshold: Float

  public init(threshold: Float) { self.threshold = threshold }

  /// The choice, with every candidate's similarity (highest first).
  public struct Choice: Sendable, Equatable {
    public var adapter: String?
    public var scores: [Score]
  }

  public struct Score: Sendable, Equatable {
    public var adapter: String
    public var similarity: Float
  }

  /// Chooses among `signatures` for the prompt embedding `embedding` ([D]).
  public func choose(embedding: [Float], signatures: [(name: String, signature: RouteSignature)]) -> Choice {
    let scores = signatures.filter { $0.signature.mean.count == embedding.count }.map {
      Score(adapter: $0.name, similarity: RouteSignature.cosine(embedding, $0.signature.mean))
    }.sorted { $0.similarity > $1.similarity }
    guard let best = scores.first, best.similarity >= threshold else { return Choice(adapter: nil, scores: scores) }
    return Choice(adapter: best.adapter, scores: scores)
  }

  /// Chooses for `prompt`, running the base over it.
  public func choose(prompt: [Int32], model: LlamaModel, store: AdapterStore) -> Choice {
    choose(embedding: RouteSignature.embed(prompt, model: model), signatures: store.signatures())
  }
}
