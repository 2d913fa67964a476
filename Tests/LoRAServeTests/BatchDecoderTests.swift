import Foundation
import LoRAKernels
import LoRAModel
import Testing

/// The mixed-adapter decode step: every row equals that sequence decoded alone (bit for bit,
/// whatever its neighbours), and decoding with the cache equals the full forward pass.
@Suite struct BatchDecoderTests {
  static func adapters(_ model: LlamaModel) throws -> [LoRAAdapter] {
    var random = SeededRandom(seed: 11)
    let configs = [
      LoRAConfig(r: 2, loraAlpha: 4, targetModules: ["all-linear"]),
      LoRAConfig(r: 4, loraAlpha: 8, targetModules: ["q_proj", "v_proj"]),
      LoRAConfig(r: 3, loraAlpha: 3, targetModules: ["down_proj", "k_proj"], layersToTransform: [1]),
      LoRAConfig(r: 2, loraAlpha: 4, targetModules: ["all-linear"], useDora: true),
    ]
    return try configs.enumerated().map { i, config in
      let adapter = try LoRAAdapter(config: config, model: model.config, seed: UInt64(20 + i))
      for m in adapter.modules { for j in 0..<m.b.count { m.b[j] = (random.nextUnitFloat() - 0.5) * 0.6 } }
      // DoRA: magnitudes off ‖W0 + s·B·A‖, so that each row is rescaled.
      model.resetMagnitudes(of: adapter)
      for m in adapter.modules {
        guard let magnitude = m.magnitude else { continue }
        for j in 0..<magnitude.count { magnitude[j] *= 0.8 + 0.4 * random.nextUnitFloat() }
      }
      return adapter
    }
  }

  static func prompt(_ length: Int, seed: UInt64) -> [Int32] {
    var random = SeededRandom(seed: seed)
    return (0..<length).map { _ in Int32(random.next() % 96) }
  }

  /// Decodes `steps` tokens of `prompt` alone and returns each step's logits row.
  static func alone(
    _ model: LlamaModel, _ adapter: LoRAAdapter?, _ prompt: [Int32], _ feed: [Int32], blockRows: Int
  ) -> [[Float]] {
    let decoder = BatchDecoder(model: model, maxRows: 1, blockRows: blockRows)
    let s = DecodeSequence(config: model.config, adapter: adapter, capacity: prompt.count + feed.count + 1)
    var rows = [decoder.prefill(s, prompt: prompt).values]
    for token in feed { rows.append(decoder.step([s], tokens: [token]).values) }
    return rows
  }

  @Test(arguments: ["tiny-qwen2", "tiny-tied"], [1, 4])
  func mixedBatchRowsEqualEachSequenceAlone(fixture: String, blockRows: Int) throws {
    let (model, _) = try LlamaModel.load(path: Fixtures.path(fixture))
    let adapters = try Self.adapters(model)
    // Six sequences: four adapters (one DoRA), the base twice, prompts of different lengths.
    let owners: [LoRAAdapter?] = [adapters[0], nil, adapters[1], adapters[2], nil, adapters[3]]
    let prompts = (0..<owners.count).map { Self.prompt(3 + 2 * $0, seed: UInt64(40 + $0)) }
    let feed = (0..<owners.count).map { Self.prompt(4, seed: UInt64(60 + $0)) }
    let v = model.config.vocabularySize
    let decoder = BatchDecoder(model: model, maxRows: 8, blockRows: blockRows)
    let sequences = zip(owners, prompts).map { owner, prompt in
      DecodeSequence(config: model.config, adapter: owner, capacity: prompt.count + 8)
    }
    for (s, p) in zip(sequences, prompts) { _ = decoder.prefill(s, prompt: p) }
    // Batches of changing membership: all six, then the first three, then 2..5.
    let memberships = [Array(0..<6), [0, 1, 2], [2, 3, 4, 5], Array(0..<6)]
    var fed = Array(repeating: 0, count: owners.count)
    var batched = Array(repeating: [[Float]](), count: owners.count)
    for members in memberships {
      let logits = decoder.step(members.map { sequences[$0] }, tokens: members.map { feed[$0][fed[$0]] })
      for (row, i) in members.enumerated() {
        batched[i].append(Array(logits.values[row * v..<(row + 1) * v]))
        fed[i] += 1
      }
    }
    for i in owners.indices {
      let solo = Self.alone(model, owners[i], prompts[i], Array(feed[i].prefix(fed[i])), blockRows: blockRows)
      let expected = Array(solo.dropFirst())
      let differing = zip(batched[i].joined(), expected.joined()).filter { $0.bitPattern != $1.bitPattern }
        .count
      #expect(
        batched[i].count == expected.count && differing == 0,
        "sequence \(i): \(differing) logits differ in a batch from alone")
    }
  }

  @Test(arguments: ["tiny-qwen2", "tiny-untied"], [0, 3])
  func decodingWithTheCacheEqualsTheFullForwardPass(fixture: String, adapterIndex: Int) throws {
    let (model, _) = try LlamaModel.load(path: Fixtures.path(fixture))
    let adapter = try Self.adapters(model)[adapterIndex]
    let tokens = Self.prompt(9, seed: 5)
    let solo = Self.alone(model, adapter, Array(tokens.prefix(4)), Array(tokens.dropFirst(4)), blockRows: 4)
    // Reference: one forward pass over all tokens, logits at positions 3 ... 8.
    let a = LlamaActivations(
      config: model.config, batch: 1, length: tokens.count, keepForBackward: false, adapter: adapter)
    let hidden = model.forward(tokens: tokens, activations: a)
    let v = model.config.vocabularySize
    let logits = Tensor(zeros: [tokens.count, v])
    model.logits(into: logits, hidden: hidden)
    for (step, row) in solo.enumerated() {
      let reference = Array(logits.values[(3 + step) * v..<(4 + step) * v])
      let scale = reference.map(abs).max() ?? 1
      let diff = zip(row, reference).map { abs($0 - $1) }.max() ?? 0
      #expect(diff <= 1e-5 * scale, "position \(3 + step): max difference \(diff) against \(scale)")
    }
  }

  /// SmolLM2-135M's product shapes: a row gives the same bits in batches of 1 to 20 rows.
  @Test func rowInvariantProductsAtRealShapes() {
    var random = SeededRandom(seed: 9)
    for (n, k) in [(576, 576), (192, 576), (1536, 576), (576, 1536), (2000, 576)] {
      let block = RowInvariantGEMM.probeBlockRows(shapes: [(n: n, k: k)])
      let gemm = RowInvariantGEMM(blockRows: block, maxInput: k)
      let w = Tensor(shape: [n, k], values: (0..<(n * k)).map { _ in random.nextUnitFloat() - 0.5 })
      let probe = (0..<k).map { _ in random.nextUnitFloat() - 0.5 }
      var reference: [Float]?
      for rows in [1, 2, 3, 5, 8, 13, 16, 20] {
        var values = (0..<(rows * k)).map { _ in random.nextUnitFloat() - 0.5 }
        let at = rows / 2
        values.replaceSubrange(at * k..<(at + 1) * k, with: probe)
        let out = Tensor(zeros: [rows, n])
        gemm.multiply(into: out, Tensor(shape: [rows, k], values: values), w)
        let row = Array(out.values[at * n..<(at + 1) * n])
        if let reference {
          let differing = zip(row, reference).filter { $0.bitPattern != $1.bitPattern }.count
          #expect(
            differing == 0,
            "\(n)×\(k), block \(block): \(differing) values of the row at \(at) of \(rows) differ")
        } else {
          reference = row
        }
      }
    }
  }
}
