import Dispatch
import LoRAKernels

/// Timings of one generation.
public struct GenerationStats: Sendable, Codable, Equatable {
  public var promptTokens: Int
  public var generatedTokens: Int
  public var promptSeconds: Double
  public var generationSeconds: Double

  public init(promptTokens: Int, generatedTokens: Int, promptSeconds: Double, generationSeconds: Double) {
    self.promptTokens = promptTokens
    self.generatedTokens = generatedTokens
    self.promptSeconds = promptSeconds
    self.generationSeconds = generationSeconds
  }
  public var promptTokensPerSecond: Double { Double(promptTokens) / max(promptSeconds, 1e-9) }
  /// Tokens after the first (the first comes from the prompt pass) per second of decoding.
  public var generationTokensPerSecond: Double {
    Double(max(generatedTokens - 1, 0)) / max(generationSeconds, 1e-9)
  }
}

/// Autoregressive generation with a KV cache: the prompt goes through the model in one
/// batched pass (matrix products over all its tokens), then one token at a time through the
/// same `BatchDecoder` step the server batches many requests with, so a prompt gives the same
/// tokens here and under load.
public final class Generator {
  public let model: LlamaModel
  public let capacity: Int
  let decoder: BatchDecoder
  let sequence: DecodeSequence

  /// The adapter applied on top of the base, if any.
  public let adapter: LoRAAdapter?
  /// Positions its virtual tokens take before the prompt.
  let virtual: Int

  /// - capacity: the most positions (prompt plus generated tokens) a generation may use; an
  ///   adapter's virtual tokens take theirs on top, within the model's context.
  public init(model: LlamaModel, capacity: Int, adapter: LoRAAdapter? = nil) {
    self.model = model
    self.adapter = adapter
    let virtual = adapter?.virtualPositions ?? 0
    self.capacity = min(capacity, model.rope.maxPositions - virtual, model.config.contextLength - virtual)
    self.virtual = virtual
    decoder = BatchDecoder(
      model: model, maxRows: 1, maxRank: max(1, adapter?.modules.map(\.rank).max() ?? 1))
    sequence = DecodeSequence(
      config: model.config, adapter: adapter, capacity: max(self.capacity, 0) + virtual)
  }

  /// Generates up to `maxTokens` tokens after `prompt`, calling `onToken` with each; stops
  /// early at a token in `stop` (which is passed to `onToken` too) or when `onToken` returns
  /// false. The prompt must leave room in the capacity.
  public func generate(
    prompt: [Int32], maxTokens: Int, sampler: inout Sampler, stop: Set<Int32> = [], onToken: (Int32) -> Bool
  ) throws -> GenerationStats {
    guard !prompt.isEmpty else { throw GenerationError.emptyPrompt }
    guard maxTokens <= capacity - prompt.count else {  // a difference: maxTokens may be near Int.max
      throw GenerationError.tooLong(prompt: prompt.count, maxTokens: maxTokens, capacity: capacity)
    }
    let started = DispatchTime.now().uptimeNanoseconds
    var token = sampler.next(decoder.prefill(sequence, prompt: prompt))
    let promptDone = DispatchTime.now().uptimeNanoseconds
    var generated = 1
    var going = onToken(token) && !stop.contains(token)
    while going && generated < maxTokens {
      token = sampler.next(decoder.step([sequence], tokens: [token]))
      generated += 1
      going = onToken(token) && !stop.contains(token)
    }
    let finished = DispatchTime.now().uptimeNanoseconds
    return GenerationStats(
      promptTokens: prompt.count, generatedTokens: generated,
      promptSeconds: Double(promptDone - started) / 1e9,
      generationSeconds: Double(finished - promptDone) / 1e9)
  }
}

/// Why a generation could not start.
public enum GenerationError: Error, Equatable, CustomStringConvertible {
  case emptyPrompt
  case tooLong(prompt: Int, maxTokens: Int, capacity: Int)

  public var description: String {
    switch self {
    case .emptyPrompt: return "the prompt encodes to no tokens"
    case .tooLong(let prompt, let maxTokens, let capacity):
      return
        "a prompt of \(prompt) tokens plus --max-tokens \(maxTokens) exceeds the context of \(capacity) positions"
    }
  }
}
