import LoRAKernels

/// A PiSSA adapter outside training: its update over the shared base is
/// s·B·A − s·B₀·A₀, which a plain LoRA adapter of rank 2r holds exactly.
extension LoRAAdapter {
  /// The adapter as plain LoRA: for PiSSA, rank 2r per module with A' = [A; A₀] and
  /// B' = [B, −B₀], r and alpha doubled (alpha × √2 with rsLoRA) so the scale stays, as
  /// PEFT's conversion (`path_initial_model_for_weight_conversion`) writes it; any other
  /// adapter is returned as it is. Every file format, `merge`, serving and the adapter
  /// tools take this form.
  public func plain() throws -> LoRAAdapter {
    guard let initial else { return self }
    var config = self.config
    config.initialization = "default"
    config.r *= 2
    let factor = config.useRslora ? 2.0.squareRoot() : 2
    config.loraAlpha *= factor
    config.rankPattern = Dictionary(uniqueKeysWithValues: modules.map { ($0.name, 2 * $0.rank) })
    config.alphaPattern = Dictionary(uniqueKeysWithValues: modules.map { ($0.name, $0.alpha * factor) })
    let result = try LoRAAdapter(config: config, model: baseConfig, seed: 0)
    for ((m, frozen), target) in zip(zip(modules, initial.modules), result.modules) {
      let (r, input, out) = (m.rank, m.inFeatures, m.outFeatures)
      target.a.view(offset: 0, shape: [r, input]).copy(from: m.a)
      target.a.view(offset: r * input, shape: [r, input]).copy(from: frozen.a)
      for j in 0..<out {
        for i in 0..<r {
          target.b[j * 2 * r + i] = m.b[j * r + i]
          target.b[j * 2 * r + r + i] = frozen.b[j * r + i]
        }
      }
    }
    if let v = virtualTokens, let to = result.virtualTokens {
      result.parameters.view(offset: to.offset, shape: [to.count]).copy(
        from: parameters.view(offset: v.offset, shape: [v.count]))
    }
    return result
  }
}
