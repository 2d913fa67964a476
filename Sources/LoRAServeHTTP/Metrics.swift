import LoRAServe

extension OpenAIServer {
  /// `GET /metrics` in Prometheus' text exposition format (version 0.0.4): the engine's and
  /// the adapter store's counters, per model where they are kept per model.
  public func metricsText() -> String {
    PrometheusText.render(engine: engine.stats(), store: engine.store.stats(), adapters: engine.store.list())
  }
}

/// Writes counters and gauges in Prometheus' text format.
enum PrometheusText {
  static func render(engine: EngineStats, store: StoreStats, adapters: [AdapterInfo]) -> String {
    var out = ""
    func metric(_ name: String, _ type: String, _ help: String, _ samples: [(labels: String, value: Int)]) {
      out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
      for s in samples { out += "\(name)\(s.labels) \(s.value)\n" }
    }
    let models = engine.perModel.keys.sorted()
    func perModel(_ value: (EngineStats.PerModel) -> Int) -> [(labels: String, value: Int)] {
      models.map { ("{model=\"\(escape($0))\"}", value(engine.perModel[$0]!)) }
    }
    metric(
      "sld_requests_total", "counter", "Requests admitted to decoding, by the model that served them.",
      perModel(\.requests))
    metric(
      "sld_prompt_tokens_total", "counter", "Prompt tokens prefilled, by model.", perModel(\.promptTokens))
    metric(
      "sld_generated_tokens_total", "counter", "Tokens generated, by model.", perModel(\.generatedTokens))
    metric(
      "sld_cancelled_requests_total", "counter", "Requests cancelled (client gone or stop string), by model.",
      perModel(\.cancelled))
    metric(
      "sld_queue_depth", "gauge", "Requests waiting for a place in the batch.", [("", engine.queueDepth)])
    metric("sld_active_sequences", "gauge", "Sequences in the decoding batch.", [("", engine.active)])
    metric("sld_decode_steps_total", "counter", "Batched decode steps run.", [("", engine.steps)])
    metric(
      "sld_decode_step_rows_total", "counter", "Rows over all decode steps (mean batch = rows / steps).",
      [("", engine.stepRows)])
    metric(
      "sld_routed_requests_total", "counter", "Requests for model \"auto\" routed.", [("", engine.routed)])
    metric(
      "sld_routed_to_base_total", "counter", "\"auto\" requests the router sent to the base alone.",
      [("", engine.routedToBase)])
    metric(
      "sld_adapter_cache_hits_total", "counter", "Adapter acquisitions found in RAM.", [("", store.hits)])
    metric(
      "sld_adapter_cache_misses_total", "counter", "Adapter acquisitions read from disk again.",
      [("", store.misses)])
    metric(
      "sld_adapter_cache_evictions_total", "counter", "Adapters dropped from RAM to fit the budget.",
      [("", store.evictions)])
    metric(
      "sld_adapter_resident_bytes", "gauge", "Bytes of adapters resident in RAM.", [("", store.residentBytes)]
    )
    if let budget = store.budgetBytes {
      metric(
        "sld_adapter_budget_bytes", "gauge", "Most bytes of resident adapters (--adapter-cache-mb).",
        [("", budget)])
    }
    metric("sld_adapters_loaded", "gauge", "Adapters loaded (resident or not).", [("", adapters.count)])
    metric(
      "sld_adapters_resident", "gauge", "Adapters resident in RAM.", [("", adapters.filter(\.resident).count)]
    )
    return out
  }

  /// A label value with `\`, `"` and newlines escaped.
  static func escape(_ value: String) -> String {
    value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
      .replacingOccurrences(of: "\n", with: "\\n")
  }
}
