import Foundation
import LoRAFormats
import LoRAKernels

#if canImport(Glibc)
  import Glibc
#endif

/// PEFT's adapter folder: `adapter_config.json` + `adapter_model.safetensors`, with PEFT's
/// key names (`base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight`) and shapes
/// (A [R, IN], B [OUT, R]), so `PeftModel.from_pretrained` loads what we save and we load
/// what PEFT saves.
extension LoRAAdapter {
  /// Why a PEFT folder cannot be written or read.
  public struct PEFTError: Error, Equatable, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
  }

  /// Writes the adapter as a PEFT folder at `path`. The files are written completely under a
  /// temporary folder beside it and then renamed into place (each rename is atomic), so a
  /// failure never leaves a half-written adapter. An existing adapter at `path` is refused
  /// unless `overwrite`; other files in an existing folder (metrics, reports) are kept.
  public func savePEFT(to path: String, baseModel: String, overwrite: Bool = false) throws {
    // PiSSA: written as the plain adapter of rank 2r, as PEFT converts it.
    if initial != nil { return try plain().savePEFT(to: path, baseModel: baseModel, overwrite: overwrite) }
    let files = FileManager.default
    let target = URL(fileURLWithPath: path).standardizedFileURL
    let names = ["adapter_config.json", "adapter_model.safetensors"]
    if !overwrite
      && names.contains(where: { files.fileExists(atPath: target.appendingPathComponent($0).path) })
    {
      throw PEFTError(
        "\(target.path) already holds an adapter; choose another output folder or pass --overwrite")
    }
    // (folder relative to the target, config, tensors): the LoRA adapter and the virtual tokens'.
    var parts: [(folder: String, config: [String: Any], tensors: [(String, Tensor)])] = []
    if !modules.isEmpty || virtualTokens == nil {
      parts.append(
        (
          "", try peftConfig(baseModel: baseModel),
          modules.flatMap { m in
            [(m.peftKeyA, m.a), (m.peftKeyB, m.b)] + (m.magnitude.map { [(m.peftKeyMagnitude, $0)] } ?? [])
          }
        ))
    }
    if let v = virtualTokens {
      parts.append(
        (
          modules.isEmpty ? "" : Self.virtualSubfolder(v.config.kind) + "/",
          virtualPEFTConfig(v, model: baseConfig, baseModel: baseModel),
          [("prompt_embeddings", virtualPEFTTensor(v))]
        ))
    }
    let parent = target.deletingLastPathComponent()
    // Staged on the filesystem of the files it replaces, so that rename(2) can move them: in
    // an existing folder (which may be a mount point of its own), else beside it.
    let exists = files.fileExists(atPath: target.path)
    let staging = (exists ? target : parent).appendingPathComponent(
      ".\(target.lastPathComponent).partial-\(UUID().uuidString.prefix(8))")
    do {
      try files.createDirectory(at: parent, withIntermediateDirectories: true)
      try files.createDirectory(at: staging, withIntermediateDirectories: false)
      for part in parts {
        let folder = staging.appendingPathComponent(part.folder)
        try files.createDirectory(at: folder, withIntermediateDirectories: true)
        try JSONSerialization.data(withJSONObject: part.config, options: [.prettyPrinted, .sortedKeys])
          .write(to: folder.appendingPathComponent("adapter_config.json"))
        try SafetensorsWriter.write(
          part.tensors.map { ($0.0, $0.1, .f32) }, metadata: ["format": "pt"],
          to: folder.appendingPathComponent("adapter_model.safetensors").path)
      }
      if !exists {
        try files.moveItem(at: staging, to: target)
        return
      }
      // A virtual-token subfolder of an earlier adapter would be read with this one: remove it.
      for kind in VirtualTokenConfig.Kind.allCases
      where !parts.contains(where: { $0.folder == Self.virtualSubfolder(kind) + "/" }) {
        try? files.removeItem(at: target.appendingPathComponent(Self.virtualSubfolder(kind)))
      }
      for part in parts {
        try files.createDirectory(
          at: target.appendingPathComponent(part.folder), withIntermediateDirectories: true)
        for name in names {
          // rename(2) replaces an existing file atomically: readers see the old or the new one.
          let from = staging.appendingPathComponent(part.folder + name).path
          let to = target.appendingPathComponent(part.folder + name).path
          guard rename(from, to) == 0 else {
            throw PEFTError("cannot move \(name) into \(target.path): \(String(cString: strerror(errno)))")
          }
        }
      }
      try? files.removeItem(at: staging)
    } catch {
      try? files.removeItem(at: staging)
      if let error = error as? PEFTError { throw error }
      throw PEFTError("cannot write the adapter to \(target.path): \(error)")
    }
  }

  /// `adapter_config.json` as PEFT writes it, with every module's rank and alpha spelled out
  /// so PEFT rebuilds exactly these modules.
  func peftConfig(baseModel: String) throws -> [String: Any] {
    var loraOnly = config
    loraOnly.virtualTokens = nil
    var json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(loraOnly)) as! [String: Any]
    json["peft_type"] = "LORA"
    json["task_type"] = "CAUSAL_LM"
    json["bias"] = "none"
    json["fan_in_fan_out"] = false
    json["inference_mode"] = true
    json["modules_to_save"] = NSNull()
    json["base_model_name_or_path"] = baseModel
    json["use_dora"] = config.useDora
    if config.layersToTransform == nil { json["layers_to_transform"] = NSNull() }
    json["rank_pattern"] = Dictionary(uniqueKeysWithValues: modules.map { ($0.name, $0.rank) })
    json["alpha_pattern"] = Dictionary(uniqueKeysWithValues: modules.map { ($0.name, $0.alpha) })
    json["target_modules"] = Array(Set(modules.map(\.target.rawValue))).sorted()
    return json
  }

  /// Reads a PEFT folder for `model`: a LoRA adapter (with the prompt- or prefix-tuning
  /// adapter of its subfolder, if any), or a prompt- or prefix-tuning adapter alone; DoRA's
  /// magnitudes with `use_dora`. Features this trainer does not implement (biases,
  /// fan-in-fan-out, modules to save) are refused with the field named.
  public static func loadPEFT(from path: String, model: LlamaConfig) throws -> LoRAAdapter {
    let configURL = URL(fileURLWithPath: path).appendingPathComponent("adapter_config.json")
    guard let data = try? Data(contentsOf: configURL) else {
      throw PEFTError("\(path): no readable adapter_config.json; expected a PEFT adapter folder")
    }
    guard let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
      throw PEFTError("\(configURL.path): not a JSON object")
    }
    if let type = json["peft_type"] as? String, ["PROMPT_TUNING", "PREFIX_TUNING"].contains(type) {
      return try virtualOnly(from: path, json: json, model: model)
    }
    if let type = json["peft_type"] as? String, type != "LORA" {
      throw PEFTError(
        "\(configURL.path): peft_type is \(type); LORA, PROMPT_TUNING and PREFIX_TUNING adapters are supported"
      )
    }
    var virtual: (VirtualTokenConfig, Tensor)?
    for kind in VirtualTokenConfig.Kind.allCases {
      let folder = URL(fileURLWithPath: path).appendingPathComponent(virtualSubfolder(kind))
      guard let data = try? Data(contentsOf: folder.appendingPathComponent("adapter_config.json")),
        let part = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
      else { continue }
      virtual = try loadVirtualPEFT(from: folder.path, json: part, model: model)
    }
    if json["fan_in_fan_out"] as? Bool == true {
      throw PEFTError("\(configURL.path): fan_in_fan_out is true; not supported")
    }
    if let bias = json["bias"] as? String, bias != "none" {
      throw PEFTError("\(configURL.path): bias is \"\(bias)\"; only \"none\" is supported")
    }
    if let extra = json["modules_to_save"] as? [Any], !extra.isEmpty {
      throw PEFTError("\(configURL.path): modules_to_save is not supported")
    }
    let config: LoRAConfig
    do { config = try JSONDecoder().decode(LoRAConfig.self, from: data) } catch {
      throw PEFTError("\(configURL.path): \(error)")
    }
    // PiSSA, OLoRA, CorDA and LoftQ rewrite the base; such an adapter is only right on PEFT's
    // residual model, unless PEFT converted it (its config then says init_lora_weights: true).
    if let kind = ["pissa", "olora", "corda", "loftq"].first(where: { config.initialization.hasPrefix($0) }) {
      throw PEFTError(
        "\(configURL.path): init_lora_weights is \"\(config.initialization)\": PEFT saved this \(kind) adapter for the "
          + "base it rewrote, not for the original; save it with PEFT's path_initial_model_for_weight_conversion "
          + "(a plain LoRA adapter of rank 2r) and load that")
    }
    let adapter = try LoRAAdapter(
      config: LoRAConfig(
        r: config.r, loraAlpha: config.loraAlpha, loraDropout: config.loraDropout,
        targetModules: config.targetModules,
        layersToTransform: config.layersToTransform, useRslora: config.useRslora,
        rankPattern: config.rankPattern,
        alphaPattern: config.alphaPattern, initialization: "zero", virtualTokens: virtual?.0,
        useDora: config.useDora), model: model,
      seed: 0)
    if let virtual { adapter.virtualTokens?.embedding.copy(from: virtual.1) }
    let weights = try SafetensorsFile(
      path: URL(fileURLWithPath: path).appendingPathComponent("adapter_model.safetensors").path)
    var expected = Set<String>()
    for m in adapter.modules {
      // DoRA's magnitude: "….lora_magnitude_vector" (PEFT ≥ 0.12; earlier with ".weight").
      let magnitudeKey = [m.peftKeyMagnitude, m.peftKeyMagnitude + ".weight"].first {
        weights.tensors[$0] != nil
      }
      let magnitude = m.magnitude.map { [(magnitudeKey ?? m.peftKeyMagnitude, $0)] } ?? []
      for (key, destination) in [(m.peftKeyA, m.a), (m.peftKeyB, m.b)] + magnitude {
        expected.insert(key)
        guard let info = weights.tensors[key] else {
          throw PEFTError("\(weights.path): has no tensor '\(key)'")
        }
        guard info.shape == destination.shape else {
          throw PEFTError(
            "\(weights.path): tensor '\(key)' has shape \(info.shape), expected \(destination.shape)")
        }
        destination.copy(from: try weights.tensor(key))
      }
    }
    if let stray = weights.tensors.keys.sorted().first(where: { !expected.contains($0) }) {
      throw PEFTError(
        "\(weights.path): tensor '\(stray)' belongs to no module of this configuration and model")
    }
    return adapter
  }

  /// A prompt- or prefix-tuning adapter alone.
  static func virtualOnly(from path: String, json: [String: Any], model: LlamaConfig) throws -> LoRAAdapter {
    let (config, embeddings) = try loadVirtualPEFT(from: path, json: json, model: model)
    let adapter = try LoRAAdapter(
      config: LoRAConfig(targetModules: [], initialization: "zero", virtualTokens: config), model: model,
      seed: 0)
    adapter.virtualTokens?.embedding.copy(from: embeddings)
    return adapter
  }
}
