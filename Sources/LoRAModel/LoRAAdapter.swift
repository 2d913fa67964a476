import Foundation
import LoRAKernels

/// A LoRA adapter for one Llama model: for each adapted (layer, linear) an A [R, IN] and a
/// B [OUT, R]. All parameters live in one contiguous buffer and all gradients in another
/// (the views per matrix come from one layout), so an all-reduce or a checkpoint touches a
/// single block of memory.
public final class LoRAAdapter: @unchecked Sendable {
  /// One adapted linear layer.
  public struct Module: Sendable {
    public let layer: Int
    public let target: LoRATarget
    public let rank: Int
    public let alpha: Double
    /// alpha/r, or alpha/√r with rsLoRA.
    public let scale: Float
    public let inFeatures: Int
    public let outFeatures: Int
    /// Where A starts in `parameters` (B follows it).
    public let offset: Int
    /// [R, IN] and [OUT, R], views into `parameters` / `gradients`.
    public let a: Tensor
    public let b: Tensor
    public let gradA: Tensor
    public let gradB: Tensor
    /// DoRA's magnitude m and its gradient, [OUT] views after B (nil without DoRA), and the
    /// row norms ‖W0 + s·B·A‖ [OUT] of the adapter's current A and B (`LlamaModel.updateNorms`).
    public let magnitude: Tensor?
    public let gradMagnitude: Tensor?
    public let norm: Tensor?

    /// The Hugging Face module name, e.g. "model.layers.3.self_attn.q_proj".
    public var name: String { target.moduleName(layer: layer) }
    /// PEFT's key of A or B in adapter_model.safetensors.
    public var peftKeyA: String { "base_model.model.\(name).lora_A.weight" }
    public var peftKeyB: String { "base_model.model.\(name).lora_B.weight" }
    /// PEFT's key of DoRA's magnitude.
    public var peftKeyMagnitude: String { "base_model.model.\(name).lora_magnitude_vector" }
    /// Floats the module takes in the buffers: A, B and (DoRA) the magnitude.
    public var parameterCount: Int { rank * inFeatures + outFeatures * rank + (magnitude?.count ?? 0) }
  }

  public let config: LoRAConfig
  /// The base configuration the adapter was laid out for.
  public let baseConfig: LlamaConfig
  public let modules: [Module]
  /// Prompt or prefix tuning trained with the modules (after them in the buffers), if any.
  public let virtualTokens: VirtualTokens?
  /// PiSSA: the frozen term −s·B₀·A₀ of the initial A and B (an adapter of the same modules
  /// whose B holds −B₀), last in the buffers and never trained, so the model is
  /// W0 − s·B₀·A₀ + s·B·A over the one shared base (nil without PiSSA).
  public let initial: LoRAAdapter?

  /// The tree ancestors in `frozen`, the adapter this one trains over: `frozen` itself, or nil
  /// when it is this adapter's own PiSSA term (which cancels its start: the base alone).
  /// DPO's reference beside the base.
  public func ancestors(in frozen: LoRAAdapter?) -> LoRAAdapter? { frozen === initial ? nil : frozen }
  /// DoRA's row norms of every module, [Σ OUT] (nil without DoRA): derived from A, B and
  /// the base, recomputed by each full forward pass, never trained or saved.
  public let norms: Tensor?
  /// Every A and B (and DoRA magnitude; then the virtual tokens' parameters), flat: [P].
  public let parameters: Tensor
  /// Their gradients: [P].
  public let gradients: Tensor
  /// modules index by layer, then by target.
  private let lookup: [[LoRATarget: Int]]

  /// One module's place in the flat buffers.
  typealias Placement = (
    layer: Int, target: LoRATarget, rank: Int, alpha: Double, out: Int, in: Int, offset: Int
  )

  /// The modules of `config` on `model`, each with its offset (for each layer and target, A
  /// then B, then DoRA's magnitude [OUT]), and the total parameter count.
  static func layout(config: LoRAConfig, model: LlamaConfig) throws -> (plan: [Placement], total: Int) {
    let targets = try config.targets()
    let layers = config.layersToTransform ?? Array(0..<model.layers)
    for layer in layers where !(0..<model.layers).contains(layer) {
      throw LoRAConfigError(
        "layers_to_transform names layer \(layer), but the model has layers 0 to \(model.layers - 1)")
    }
    try config.validate()
    var plan: [Placement] = []
    var total = 0
    for layer in Set(layers).sorted() {
      for target in targets {
        let (out, input) = target.shape(model)
        let name = target.moduleName(layer: layer)
        let (rank, alpha) = config.rankAndAlpha(module: name)
        guard rank > 0 && rank <= min(out, input) else {
          throw LoRAConfigError(
            "rank \(rank) of \(name) must be between 1 and \(min(out, input)) (its weight is \(out)×\(input))"
          )
        }
        guard alpha.isFinite && alpha > 0 else {
          throw LoRAConfigError("lora_alpha of \(name) must be positive, got \(alpha)")
        }
        plan.append((layer, target, rank, alpha, out, input, total))
        total += rank * input + out * rank + (config.useDora ? out : 0)
      }
    }
    total += config.virtualTokens?.parameterCount(model) ?? 0
    // PiSSA's frozen initial A₀ and −B₀, laid out as a plain adapter of the same modules.
    if config.pissa != nil { total += plan.reduce(0) { $0 + $1.rank * ($1.in + $1.out) } }
    return (plan, total)
  }

  /// Floats of the buffers of an adapter of `config` on `model` (PiSSA's frozen term included).
  public static func parameterCount(config: LoRAConfig, model: LlamaConfig) throws -> Int {
    try layout(config: config, model: model).total
  }

  /// Builds the adapter for `model` and initialises it from `seed` (PEFT's default: A
  /// Kaiming-uniform with a = √5, i.e. U(−1/√IN, 1/√IN), and B zero; "gaussian": A ~ N(0, 1/r)).
  /// With `parameters` and `gradients` (views of exactly `parameterCount` floats each) the
  /// adapter lives in them, so adapters trained together share one gradient allocation and
  /// one all-reduce.
  public init(
    config: LoRAConfig, model: LlamaConfig, seed: UInt64, parameters storedParameters: Tensor? = nil,
    gradients storedGradients: Tensor? = nil
  ) throws {
    let (plan, total) = try LoRAAdapter.layout(config: config, model: model)
    let parameters: Tensor
    let gradients: Tensor
    if let storedParameters, let storedGradients {
      guard storedParameters.count == total && storedGradients.count == total else {
        throw LoRAConfigError(
          "adapter storage holds \(storedParameters.count)/\(storedGradients.count) floats; the adapter needs \(total)"
        )
      }
      (parameters, gradients) = (storedParameters.reshaped([total]), storedGradients.reshaped([total]))
    } else {
      (parameters, gradients) = (Tensor(zeros: [total]), Tensor(zeros: [total]))
    }
    self.parameters = parameters
    self.gradients = gradients
    var lookup = Array(repeating: [LoRATarget: Int](), count: model.layers)
    let norms = config.useDora ? Tensor(zeros: [plan.reduce(0) { $0 + $1.out }]) : nil
    var normOffset = 0
    modules = plan.enumerated().map { i, p in
      lookup[p.layer][p.target] = i
      let aCount = p.rank * p.in
      let magnitudeOffset = p.offset + aCount + p.out * p.rank
      defer { normOffset += norms == nil ? 0 : p.out }
      return Module(
        layer: p.layer, target: p.target, rank: p.rank, alpha: p.alpha,
        scale: Float(config.scale(rank: p.rank, alpha: p.alpha)), inFeatures: p.in, outFeatures: p.out,
        offset: p.offset,
        a: parameters.view(offset: p.offset, shape: [p.rank, p.in]),
        b: parameters.view(offset: p.offset + aCount, shape: [p.out, p.rank]),
        gradA: gradients.view(offset: p.offset, shape: [p.rank, p.in]),
        gradB: gradients.view(offset: p.offset + aCount, shape: [p.out, p.rank]),
        magnitude: norms == nil ? nil : parameters.view(offset: magnitudeOffset, shape: [p.out]),
        gradMagnitude: norms == nil ? nil : gradients.view(offset: magnitudeOffset, shape: [p.out]),
        norm: norms?.view(offset: normOffset, shape: [p.out]))
    }
    self.norms = norms
    self.lookup = lookup
    self.config = config
    baseConfig = model
    let loraCount = modules.last.map { $0.offset + $0.parameterCount } ?? 0
    virtualTokens = config.virtualTokens.map {
      VirtualTokens(config: $0, model: model, parameters: parameters, gradients: gradients, offset: loraCount)
    }
    if config.pissa != nil {
      let start = loraCount + (virtualTokens?.count ?? 0)
      var frozen = config
      (frozen.initialization, frozen.virtualTokens) = ("zero", nil)
      initial = try LoRAAdapter(
        config: frozen, model: model, seed: 0,
        parameters: parameters.view(offset: start, shape: [total - start]),
        gradients: gradients.view(offset: start, shape: [total - start]))
    } else {
      initial = nil
    }
    initialize(seed: seed)
  }

  /// Where PiSSA's frozen initial term lies in the buffers (nil without PiSSA): never trained.
  public var frozenRange: Range<Int>? {
    initial.map { (parameters.count - $0.parameterCount)..<parameters.count }
  }

  /// Where each module's B lies in `parameters` and `gradients`, in order (LoRA+ gives
  /// them a learning rate of their own).
  public var bRanges: [Range<Int>] {
    modules.map {
      let start = $0.offset + $0.rank * $0.inFeatures
      return start..<(start + $0.outFeatures * $0.rank)
    }
  }

  /// The module adapting `target` of `layer`, if any.
  public func module(layer: Int, target: LoRATarget) -> Module? {
    lookup[layer][target].map { modules[$0] }
  }

  /// Floats of the buffers (with PiSSA's frozen term).
  public var parameterCount: Int { parameters.count }
  /// Trained parameters: the buffers without PiSSA's frozen term.
  public var trainableCount: Int { parameters.count - (initial?.parameterCount ?? 0) }

  /// Trained parameters of an adapter of `config` on `model`.
  public static func trainableCount(config: LoRAConfig, model: LlamaConfig) throws -> Int {
    let (plan, total) = try layout(config: config, model: model)
    return total - (config.pissa == nil ? 0 : plan.reduce(0) { $0 + $1.rank * ($1.in + $1.out) })
  }

  /// Throws when the adapter has virtual tokens: `use` (e.g. "GGUF LoRA export") holds ΔW
  /// only, and prompt or prefix tuning is no change of the weights; `instead` says what keeps it.
  public func requireNoVirtualTokens(_ use: String, instead: String) throws(LoRAConfigError) {
    guard let v = config.virtualTokens else { return }
    throw LoRAConfigError(
      "\(use) holds LoRA's ΔW only, and this adapter also has \(v.summary), which changes no weight "
        + "and would be lost; \(instead)")
  }

  /// Throws when the adapter uses DoRA: `use` holds s·B·A alone (a low-rank ΔW), and DoRA's
  /// magnitudes rescale W0 + s·B·A row by row, which no low-rank term carries; `instead` says
  /// what keeps it.
  public func requireNoDoRA(_ use: String, instead: String) throws(LoRAConfigError) {
    guard config.useDora else { return }
    throw LoRAConfigError(
      "\(use) holds a low-rank ΔW = s·B·A, and this is a DoRA adapter (use_dora) whose magnitudes "
        + "rescale each row of W0 + s·B·A, which would be lost; \(instead)")
  }

  /// Context positions the virtual tokens take before a sequence's own (0 without).
  public var virtualPositions: Int { config.virtualTokens?.positions ?? 0 }

  /// Draws A (B stays zero) as PEFT does, from `seed`; then the virtual tokens' parameters
  /// (see `VirtualTokens.initialize`). DoRA's magnitudes need the base:
  /// `LlamaModel.initializeFromBase` sets them.
  public func initialize(seed: UInt64) {
    parameters.zero()
    // PiSSA's A and B come from the base (`LlamaModel.initializeFromBase`); until then plain LoRA's.
    guard config.initialization != "zero" else { return }
    var random = SeededRandom(seed: seed)
    defer {
      var virtualRandom = SeededRandom(seed: seed ^ 0x5649_5254_5541_4C00)
      virtualTokens?.initialize(&virtualRandom)
    }
    for m in modules {
      if config.initialization == "gaussian" {
        random.fillNormal(m.a, std: 1 / Float(m.rank))
      } else {
        random.fillUniform(m.a, bound: 1 / Float(m.inFeatures).squareRoot())
      }
    }
  }
}
