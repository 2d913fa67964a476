import Foundation
import LoRACheckpoint
import LoRAFormats
import LoRAModel
import LoRARun
import LoRATraining

/// `eval --objective dpo`: DPO's loss and reward metrics on preference pairs, per adapter.
extension Eval {
  func scorePreferences(files: ModelFiles, model llama: LlamaModel, tokenizer: Tokenizer) throws {
    var pairs = try PreferenceLoader.load(
      path: data, tokenizer: tokenizer,
      options: DatasetOptions(format: DataFormat(rawValue: dataFormat)!, maxSequenceLength: maxSeqLen)
        .resolvingChatFormat(template: files.chatTemplate, tokenizer: tokenizer)
    ).pairs
    if let limit { pairs = Array(pairs.prefix(limit)) }
    let examples = pairs.flatMap { [$0.chosen, $0.rejected] }
    let loss = DPOLoss(beta: beta)
    let padID = Int32(tokenizer.padID ?? tokenizer.eosID ?? 0)
    var results: [PreferenceEvalResult] = []
    for path in adapters.adapter.isEmpty ? [nil] : adapters.adapter.map({ Optional($0) }) {
      // The policy is the adapter over its ancestors; the reference, where it started.
      var (own, chain): (LoRAAdapter?, LoRAAdapter?) = (nil, nil)
      if let path {
        own = try AdapterFile.loadOwn(path, model: llama, files: files, force: adapters.force).adapter
        if let (ancestors, _) = try AdapterChainRecord.ancestors(of: path, model: llama.config) {
          chain = try AdapterChain.flatten(ancestors, model: llama.config)
        }
      }
      let evaluator = Evaluator(
        model: llama, adapter: own, microBatch: passBatch(path), padID: padID, frozen: chain)
      let sums = evaluator.preferenceSums(of: examples, loss: loss)
      var metrics = DPOMetrics()
      metrics.values = sums.metrics.map { $0 / Double(max(sums.pairs, 1)) }
      results.append(
        PreferenceEvalResult(
          model: base.model, adapter: path, data: data, pairs: sums.pairs, beta: beta,
          loss: sums.loss / Double(max(sums.pairs, 1)), metrics: metrics))
    }
    if output.json {
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.sortedKeys]
      for result in results { print(String(decoding: try encoder.encode(result), as: UTF8.self)) }
      return
    }
    for r in results {
      print("\(r.adapter.map { "adapter \($0) on " } ?? "")\(base.model)")
      print("data \(data): \(r.pairs) preference pairs, β \(format(beta, 3))")
      print(
        "dpo loss \(format(r.loss, 4)), reward accuracy \(format(100 * r.metrics.accuracy, 1))%, margin "
          + "\(format(r.metrics.margin, 4)) (chosen \(format(r.metrics.chosenReward, 4)), rejected "
          + "\(format(r.metrics.rejectedReward, 4)))")
    }
    guard results.count > 1 else { return }
    let width = max(7, results.map { ($0.adapter ?? "base").count }.max() ?? 0)
    func cell(_ text: String, _ width: Int) -> String {
      text.padding(toLength: width, withPad: " ", startingAt: 0)
    }
    print("\n" + cell("adapter", width) + "  dpo loss  accuracy  margin")
    for r in results {
      let accuracy = format(100 * r.metrics.accuracy, 1) + "%"
      let row = [cell(r.adapter ?? "base", width), cell(format(r.loss, 4), 8), cell(accuracy, 8)]
      print(row.joined(separator: "  ") + "  " + format(r.metrics.margin, 4))
    }
  }
}

/// One adapter's DPO scores (`eval --objective dpo --json`: one line each).
struct PreferenceEvalResult: Codable {
  var model: String
  var adapter: String?
  var data: String
  var pairs: Int
  var beta: Double
  /// The mean DPO loss over the pairs (label smoothing 0).
  var loss: Double
  var metrics: DPOMetrics
}
