import Foundation
import LoRAFormats
import LoRAKernels

/// The virtual tokens' side of a PEFT folder. PEFT keeps prompt or prefix tuning in an adapter
/// of its own (peft_type PROMPT_TUNING or PREFIX_TUNING, one tensor `prompt_embeddings`), and
/// one PeftModel cannot hold it together with LoRA. So an adapter with both is written as the
/// LoRA adapter with the prompt-learning adapter in a subfolder (`prompt_tuning/` or
/// `prefix_tuning/`); one with virtual tokens alone is that prompt-learning adapter itself.
extension LoRAAdapter {
  /// The subfolder of a combined adapter's PEFT folder that holds its virtual tokens.
  public static func virtualSubfolder(_ kind: VirtualTokenConfig.Kind) -> String {
    kind == .prompt ? "prompt_tuning" : "prefix_tuning"
  }

  /// PEFT's adapter_config.json of the virtual tokens, on `model`.
  func virtualPEFTConfig(_ v: VirtualTokens, model c: LlamaConfig, baseModel: String) -> [String: Any] {
    var json: [String: Any] = [
      "peft_type": v.config.kind == .prompt ? "PROMPT_TUNING" : "PREFIX_TUNING", "task_type": "CAUSAL_LM",
      "num_virtual_tokens": v.config.tokens, "num_layers": c.layers, "num_transformer_submodules": 1,
      "inference_mode": true, "base_model_name_or_path": baseModel, "modules_to_save": NSNull(),
      "revision": NSNull(), "auto_mapping": NSNull(),
    ]
    if v.config.kind == .prompt {
      json["token_dim"] = c.hiddenSize
      json["num_attention_heads"] = c.heads
      json["prompt_tuning_init"] = "RANDOM"
      json["prompt_tuning_init_text"] = NSNull()
      json["tokenizer_name_or_path"] = NSNull()
      json["tokenizer_kwargs"] = NSNull()
    } else {
      // PEFT sizes a prefix by the key/value heads (its GQA rule) and, in inference mode,
      // holds the table itself: a projection is saved as its output, as PEFT saves it.
      json["token_dim"] = c.kvHeads * c.headSize
      json["num_attention_heads"] = c.kvHeads
      json["encoder_hidden_size"] = v.config.projection ?? c.kvHeads * c.headSize
      json["prefix_projection"] = v.config.projection != nil
      json["init_weights"] = NSNull()
    }
    return json
  }

  /// `prompt_embeddings` as PEFT saves it: the prompt embeddings, or the prefix table
  /// [N, L·2·KVW] (computed through the projection when there is one).
  func virtualPEFTTensor(_ v: VirtualTokens) -> Tensor {
    guard let p = v.projection else { return v.embedding }
    let table = Tensor(zeros: [v.config.tokens, p.w2.shape[0]])
    PrefixProjection.forward(
      table: table, hidden: Tensor(zeros: [v.config.tokens, p.w1.shape[0]]), e: v.embedding, w1: p.w1,
      b1: p.b1,
      w2: p.w2, b2: p.b2)
    return table
  }

  /// Reads PEFT's prompt- or prefix-tuning folder at `path` for `model`: the configuration
  /// (a projection becomes its saved output table) and the [N, width] embeddings.
  static func loadVirtualPEFT(from path: String, json: [String: Any], model c: LlamaConfig) throws -> (
    VirtualTokenConfig, Tensor
  ) {
    let configPath = URL(fileURLWithPath: path).appendingPathComponent("adapter_config.json").path
    let kind: VirtualTokenConfig.Kind = json["peft_type"] as? String == "PROMPT_TUNING" ? .prompt : .prefix
    guard let n = json["num_virtual_tokens"] as? Int, n >= 1 else {
      throw PEFTError("\(configPath): num_virtual_tokens must be a whole number of at least 1")
    }
    if let task = json["task_type"] as? String, task != "CAUSAL_LM" {
      throw PEFTError("\(configPath): task_type is \(task); only CAUSAL_LM adapters apply to this model")
    }
    if let submodules = json["num_transformer_submodules"] as? Int, submodules != 1 {
      throw PEFTError("\(configPath): num_transformer_submodules is \(submodules); a decoder has 1")
    }
    let config = VirtualTokenConfig(kind: kind, tokens: n)
    let width = config.embeddingWidth(c)
    let weights = try SafetensorsFile(
      path: URL(fileURLWithPath: path).appendingPathComponent("adapter_model.safetensors").path)
    guard let info = weights.tensors["prompt_embeddings"] else {
      throw PEFTError("\(weights.path): has no tensor 'prompt_embeddings'")
    }
    guard info.shape == [n, width] else {
      throw PEFTError(
        "\(weights.path): prompt_embeddings has shape \(info.shape), expected [\(n), \(width)] for "
          + (kind == .prompt ? "prompt tuning" : "prefix tuning") + " on this model")
    }
    return (config, try weights.tensor("prompt_embeddings").reshaped([n, width]))
  }
}
