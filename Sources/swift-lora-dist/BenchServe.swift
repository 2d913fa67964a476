import ArgumentParser
import Dispatch
import Foundation
import LoRAFormats
import LoRAKernels
import LoRAModel
import LoRARun
import LoRAServe

/// `swift-lora-dist bench-serve`: what serving costs on this machine, measured side by side.
struct BenchServe: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench-serve",
    abstract: "Time decode steps, mixed-adapter batches and merged task switches on a base model.",
    discussion: """
      Three measurements, on random adapters of --rank (B drawn at random, so every \
      product does real work) and random tokens:

      decode: one decode step for 1, 4, 8 and 16 sequences of one adapter, in tokens/s.

      mixed: 8 sequences over 4 adapters against the same 8 with one adapter, steps \
      alternating; the time ratio (goal: at most 1.10).

      switch: merged task switching among 4 adapters (each switch restores the adapted \
      matrices from the base and merges the next adapter, bit-exact), in ms per switch, \
      for --targets and for all-linear.

      See docs/serving.md and docs/benchmarks.md.

      Examples:
        swift-lora-dist bench-serve --model model.gguf
        swift-lora-dist bench-serve --model model.gguf --threads 1 --rounds 10 --json
      """)

  @OptionGroup var base: BaseModelOptions
  @OptionGroup var precision: BasePrecisionOptions
  @Option(help: "LoRA targets of the decode and mixed measurements, comma-separated, or all-linear.")
  var targets = "q_proj,v_proj"
  @Option(help: "LoRA rank.") var rank = 8
  @Option(help: "Timed rounds of each measurement.") var rounds = 6
  @OptionGroup var threading: ThreadOptions
  @Option(name: .customLong("block-rows"), help: "Rows per frozen product call (default: probed).")
  var blockRows: Int?
  @OptionGroup var output: JSONOutputOptions

  func validate() throws {
    guard rank >= 1, rounds >= 1 else { throw ValidationError("--rank ≥ 1 and --rounds ≥ 1 are needed") }
    if let blockRows, blockRows < 1 { throw ValidationError("--block-rows must be at least 1") }
  }

  struct Result: Codable {
    var cpu: String
    var threads: Int
    var blockRows: Int
    /// Rows → decode tokens/s (median over rounds).
    var decodeTokensPerSecond: [String: Double]
    var mixedSeconds: Double
    var oneAdapterSeconds: Double
    var mixedRatio: Double
    /// Targets ("q_proj,v_proj", "all-linear") → ms per switch (median).
    var switchMilliseconds: [String: Double]
  }

  func run() throws {
    threading.apply()
    let (llama, _) = try LlamaModel.load(ModelFiles.open(base.model), precision: precision.value.resolve())
    try precision.apply(to: llama)
    let c = llama.config
    let config = LoRAConfig(
      r: rank, loraAlpha: Double(2 * rank), targetModules: targets.split(separator: ",").map(String.init))
    let adapters = try (0..<4).map { try Self.randomAdapter(config, llama, seed: UInt64($0)) }
    let decoder = BatchDecoder(model: llama, maxRows: 16, maxRank: rank, blockRows: blockRows)
    let steps = 4
    func sequences(_ owners: [LoRAAdapter?]) -> [DecodeSequence] {
      owners.enumerated().map { i, owner in
        let s = DecodeSequence(config: c, adapter: owner, capacity: 16 + (rounds + 1) * steps * 2 + 2)
        _ = decoder.prefill(s, prompt: (0..<16).map { Int32(($0 * 7919 + i * 104_729) % c.vocabularySize) })
        return s
      }
    }
    func timeSteps(_ batch: [DecodeSequence]) -> Double {
      let tokens = (0..<batch.count).map { Int32($0 + 100) }
      let start = DispatchTime.now().uptimeNanoseconds
      for _ in 0..<steps { _ = decoder.step(batch, tokens: tokens) }
      return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 / Double(steps)
    }
    var decode: [String: Double] = [:]
    for rows in [1, 4, 8, 16] {
      let batch = sequences(Array(repeating: adapters[0], count: rows))
      _ = timeSteps(batch)
      decode["\(rows)"] = Double(rows) / Self.median((0..<rounds).map { _ in timeSteps(batch) })
    }
    let mixed = sequences((0..<8).map { adapters[$0 / 2] })
    let single = sequences(Array(repeating: adapters[0], count: 8))
    _ = (timeSteps(mixed), timeSteps(single))
    var (mixedTimes, singleTimes) = ([Double](), [Double]())
    for _ in 0..<rounds {
      mixedTimes.append(timeSteps(mixed))
      singleTimes.append(timeSteps(single))
    }
    var switches: [String: Double] = [:]
    for targetList in Set([targets, "all-linear"]).sorted() {
      let lora = LoRAConfig(
        r: rank, loraAlpha: Double(2 * rank), targetModules: targetList.split(separator: ",").map(String.init)
      )
      let set = try (0..<4).map { try Self.randomAdapter(lora, llama, seed: UInt64(10 + $0)) }
      let switcher = TaskSwitcher(base: llama, targets: Set(try lora.targets()))
      try switcher.activate(set[0])
      var times: [Double] = []
      for i in 0..<(rounds * 4) {
        let start = DispatchTime.now().uptimeNanoseconds
        try switcher.activate(set[(i + 1) % 4])
        times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
      }
      switches[targetList] = Self.median(times)
    }
    let (m, s) = (Self.median(mixedTimes), Self.median(singleTimes))
    let result = Result(
      cpu: BLAS.coreName, threads: BLAS.threads, blockRows: decoder.blockRows, decodeTokensPerSecond: decode,
      mixedSeconds: m, oneAdapterSeconds: s, mixedRatio: m / s, switchMilliseconds: switches)
    if output.json {
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.sortedKeys]
      print(String(decoding: try encoder.encode(result), as: UTF8.self))
      return
    }
    print("kernel \(result.cpu), \(result.threads) thread(s), \(result.blockRows) row(s) per product call")
    for rows in [1, 4, 8, 16] {
      print("decode \(rows) sequence(s): \(format(decode["\(rows)"] ?? 0, 1)) tokens/s")
    }
    print(
      "mixed 8 sequences over 4 adapters: \(format(m * 1e3, 2)) ms per step against \(format(s * 1e3, 2)) ms with one adapter: \(format(m / s, 3))×"
    )
    for (name, ms) in switches.sorted(by: { $0.key < $1.key }) {
      print("switch \(name): \(format(ms, 2)) ms")
    }
  }

  static func randomAdapter(_ config: LoRAConfig, _ model: LlamaModel, seed: UInt64) throws -> LoRAAdapter {
    let adapter = try LoRAAdapter(config: config, model: model.config, seed: seed)
    var random = SeededRandom(seed: seed &+ 77)
    for m in adapter.modules { for j in 0..<m.b.count { m.b[j] = (random.nextUnitFloat() - 0.5) * 0.02 } }
    return adapter
  }

  static func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.isEmpty ? 0 : sorted[sorted.count / 2]
  }
}
