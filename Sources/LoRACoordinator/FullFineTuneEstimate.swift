import Foundation
import LoRAKernels
import LoRAModel

/// The parameter and memory story the LoRA paper tells (section 4.2): how few parameters an
/// adapter trains against a full fine-tune of the same model, and an estimate of the memory
/// that full fine-tune would need, for one rank and the same micro-batch, in fp32 with AdamW
/// as PyTorch runs it: weights, their gradients and two moments (16 bytes per parameter),
/// plus the activations kept for the backward pass, counted as this tool keeps them for a
/// LoRA run of the same batch (a full fine-tune keeps at least these). An estimate, labelled
/// as one wherever it is printed.
public struct FullFineTuneEstimate: Codable, Equatable, Sendable {
  /// Every parameter of the base model.
  public var modelParameters: Int
  /// The adapter's trainable parameters.
  public var trainableParameters: Int
  /// 100 · trainable / model.
  public var trainablePercent: Double
  /// model / trainable: how many times fewer parameters LoRA trains.
  public var reductionFactor: Double
  /// fp32 weights, gradients and AdamW's two moments of every parameter.
  public var weightBytes: Int
  public var gradientBytes: Int
  public var optimizerBytes: Int
  /// Activations and their gradients for the micro-batch (counted as for the LoRA run).
  public var activationBytes: Int

  public var totalBytes: Int { weightBytes + gradientBytes + optimizerBytes + activationBytes }

  /// The estimate for `adapterParameters` trainable parameters on `config`, with the
  /// activation buffers of a LoRA run of `sequences` × `length` (`MemoryEstimate`'s count).
  public init(config: LlamaConfig, adapterParameters: Int, activationBytes: Int) {
    modelParameters = config.parameterCount
    trainableParameters = adapterParameters
    trainablePercent = 100 * Double(adapterParameters) / Double(max(modelParameters, 1))
    reductionFactor = Double(modelParameters) / Double(max(adapterParameters, 1))
    weightBytes = 4 * modelParameters
    gradientBytes = 4 * modelParameters
    optimizerBytes = 8 * modelParameters
    self.activationBytes = activationBytes
  }

  /// The estimate for one adapter of `lora` trained on micro-batches of `sequences` ×
  /// `length` tokens.
  public init(config: LlamaConfig, lora: LoRAConfig, sequences: Int, length: Int) throws {
    let memory = try MemoryEstimate(
      config: config, precision: .f32, adapters: [(lora, sequences)], length: length)
    self.init(
      config: config, adapterParameters: try LoRAAdapter.parameterCount(config: lora, model: config),
      activationBytes: memory.bufferBytes)
  }
}
