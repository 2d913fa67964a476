import Foundation
import LoRAKernels
import LoRAModel
import Testing

@testable import LoRAServe

/// Merged task switching: merged logits equal the unmerged adapter's, the base is never
/// written, and after 1,000 switches among 4 adapters every matrix has the bits of a fresh merge.
@Suite struct TaskSwitcherTests {
  static func logits(_ model: LlamaModel, _ adapter: LoRAAdapter?, _ tokens: [Int32]) -> [Float] {
    let a = LlamaActivations(
      config: model.config, batch: 1, length: tokens.count, keepForBackward: false, adapter: adapter)
    let hidden = model.forward(tokens: tokens, activations: a)
    let out = Tensor(zeros: [tokens.count, model.config.vocabularySize])
    model.logits(into: out, hidden: hidden)
    return out.values
  }

  static func relative(_ a: [Float], _ b: [Float]) -> Float {
    let scale = b.map(abs).max() ?? 1
    return (zip(a, b).map { abs($0 - $1) }.max() ?? 0) / max(scale, 1e-30)
  }

  @Test func mergedEqualsUnmergedAndSwitchingIsBitExact() throws {
    let f = try ServeFixture()
    let configs =
      ServeFixture.configs + [
        LoRAConfig(r: 8, loraAlpha: 16, targetModules: ["q_proj", "v_proj"]),
        LoRAConfig(r: 2, loraAlpha: 4, targetModules: ["all-linear"], useDora: true),
      ]
    let adapters = try configs.enumerated().map { try f.adapter($1, seed: UInt64(30 + $0)) }
    let switcher = TaskSwitcher(base: f.model, targets: Set(LoRATarget.allCases))
    let originals = f.model.weights.layers.map { w in LoRATarget.allCases.map { w.matrix($0).values } }
    let tokens: [Int32] = [3, 17, 42, 5, 88, 9]

    for adapter in adapters {
      try switcher.activate(adapter)
      let merged = Self.logits(switcher.model, nil, tokens)
      let unmerged = Self.logits(f.model, adapter, tokens)
      #expect(Self.relative(merged, unmerged) < 1e-5)
    }
    // 1,000 switches in a fixed pseudo-random order, then each adapter once more.
    var random = SeededRandom(seed: 4)
    for _ in 0..<1000 { try switcher.activate(adapters[Int(random.next() % UInt64(adapters.count))]) }
    for adapter in adapters {
      try switcher.activate(adapter)
      let fresh = TaskSwitcher(base: f.model, targets: Set(LoRATarget.allCases))
      try fresh.activate(adapter)
      for (l, w) in switcher.model.weights.layers.enumerated() {
        for target in LoRATarget.allCases {
          let (now, clean) = (w.matrix(target).values, fresh.model.weights.layers[l].matrix(target).values)
          #expect(now.map(\.bitPattern) == clean.map(\.bitPattern), "layer \(l) \(target) drifted")
        }
      }
    }
    // Back to the base: bit-exact; the base itself was never written.
    try switcher.activate(nil)
    for (l, w) in switcher.model.weights.layers.enumerated() {
      for (t, target) in LoRATarget.allCases.enumerated() {
        #expect(w.matrix(target).values.map(\.bitPattern) == originals[l][t].map(\.bitPattern))
        #expect(f.model.weights.layers[l].matrix(target).values == originals[l][t])
      }
    }
  }

  @Test func refusesAnAdapterOfATargetItDoesNotHold() throws {
    let f = try ServeFixture()
    let switcher = TaskSwitcher(base: f.model, targets: [.q, .v])
    let allLinear = try f.adapter(ServeFixture.configs[0], seed: 1)
    #expect(performing: { try switcher.activate(allLinear) }, throws: { ($0 as? ServeError)?.status == 409 })
    #expect(switcher.current == nil)
  }
}
