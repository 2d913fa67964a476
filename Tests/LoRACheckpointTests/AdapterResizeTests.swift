import Foundation
import LoRAKernels
import LoRAModel
import Testing

@testable import LoRACheckpoint

/// Shrinking by truncated SVD (exact at full rank, the best rank-k otherwise), growing with
/// the output unchanged, per-module ranks through rank_pattern, and bad requests.
@Suite struct AdapterResizeTests {
  static func maxDelta(_ x: LoRAAdapter.Module, _ y: LoRAAdapter.Module) -> Float {
    ExportFixtures.maxDifference(ExportFixtures.delta(x).values, ExportFixtures.delta(y).values)
  }

  @Test func shrinkAtFullRankIsExact() throws {
    let (model, adapter) = try AdapterAnalysisTests.adapter(rank: 4, seed: 1)
    let (resized, changes) = try AdapterResize.resized(adapter, model: model.config, to: .energy(1))
    #expect(changes.allSatisfy { $0.from == 4 && $0.to == 4 && abs($0.energyKept - 1) < 1e-12 })
    for (old, new) in zip(adapter.modules, resized.modules) {
      let scale = ExportFixtures.maxAbs(ExportFixtures.delta(old).values)
      #expect(Self.maxDelta(old, new) <= 1e-5 * scale, "\(old.name)")
      #expect(new.scale == old.scale)
    }
    // The same logits, to float rounding.
    let before = ExportFixtures.logits(model, adapter: adapter)
    let after = ExportFixtures.logits(model, adapter: resized)
    #expect(ExportFixtures.maxDifference(before, after) <= 1e-4 * ExportFixtures.maxAbs(before))
  }

  @Test func shrinkKeepsTheBestRankKApproximation() throws {
    let (model, adapter) = try AdapterAnalysisTests.adapter(rank: 6, seed: 2)
    let (resized, changes) = try AdapterResize.resized(adapter, model: model.config, to: .rank(2))
    #expect(resized.config.r == 2 && resized.config.loraAlpha == 8.0 * 2 / 6)
    for ((old, new), change) in zip(zip(adapter.modules, resized.modules), changes) {
      let svd = try DeltaSVD(old)
      #expect(new.rank == 2 && abs(change.energyKept - svd.energy(top: 2)) < 1e-12)
      // The truncation of the dense ΔW's own SVD.
      let dense = ExportFixtures.delta(old).values.map(Double.init)
      let (u, s, vt) = try LAPACK.svd(dense, rows: old.outFeatures, columns: old.inFeatures, subject: "dense")
      let k = min(old.outFeatures, old.inFeatures)
      var truncated = [Double](repeating: 0, count: dense.count)
      for i in 0..<old.outFeatures {
        for j in 0..<old.inFeatures {
          truncated[i * old.inFeatures + j] = (0..<2).reduce(0) {
            $0 + u[i * k + $1] * s[$1] * vt[$1 * old.inFeatures + j]
          }
        }
      }
      let got = ExportFixtures.delta(new).values.map(Double.init)
      #expect(zip(got, truncated).allSatisfy { abs($0 - $1) <= 1e-5 * s[0] }, "\(old.name)")
    }
  }

  @Test func growLeavesTheLogitsUnchanged() throws {
    let (model, adapter) = try AdapterAnalysisTests.adapter(rank: 2, seed: 3)
    let (grown, changes) = try AdapterResize.resized(adapter, model: model.config, to: .rank(6), seed: 9)
    #expect(changes.allSatisfy { $0.from == 2 && $0.to == 6 && $0.energyKept == 1 })
    #expect(grown.config.r == 6 && grown.config.loraAlpha == 8.0 * 3)
    #expect(ExportFixtures.logits(model, adapter: grown) == ExportFixtures.logits(model, adapter: adapter))
    for (old, new) in zip(adapter.modules, grown.modules) {
      #expect(new.scale == old.scale)
      let newRows = Array(new.a.values[(2 * old.inFeatures)...])
      #expect(newRows.contains { $0 != 0 }, "new directions of A are drawn")
      for i in 0..<old.outFeatures { for j in 2..<6 { #expect(new.b[i * 6 + j] == 0) } }
    }
  }

  @Test func perModuleRanksSurviveAPEFTRoundTrip() throws {
    let (model, adapter) = try AdapterAnalysisTests.adapter(rank: 4, seed: 4)
    // A module whose ΔW has one direction: its 99% rank is 1, the others keep more.
    let first = adapter.modules[0]
    for i in 0..<first.a.count { first.a[i] = i < first.inFeatures ? Float(i % 5) * 0.1 : 0 }
    let (resized, changes) = try AdapterResize.resized(adapter, model: model.config, to: .energy(0.99))
    #expect(changes[0].to == 1 && changes.dropFirst().contains { $0.to > 1 })
    let folder = try ExportTestFolder()
    try resized.savePEFT(to: folder.path + "/peft", baseModel: "tiny")
    let loaded = try LoRAAdapter.loadPEFT(from: folder.path + "/peft", model: model.config)
    for (x, y) in zip(resized.modules, loaded.modules) {
      #expect(x.rank == y.rank && x.scale == y.scale && x.a.values == y.a.values && x.b.values == y.b.values)
    }
  }

  @Test func impossibleRequestsNameWhatIsWrong() throws {
    let (model, adapter) = try AdapterAnalysisTests.adapter(rank: 2, seed: 5)
    #expect(
      throws: AdapterResize.ResizeError(
        "rank 17 is not possible for model.layers.0.self_attn.v_proj: it must be between 1 and 16 (its weight is 16×32)"
      )
    ) { try AdapterResize.resized(adapter, model: model.config, to: .rank(17)) }
    #expect(throws: AdapterResize.ResizeError("--energy must be in (0, 1], got 1.5")) {
      try AdapterResize.resized(adapter, model: model.config, to: .energy(1.5))
    }
  }
}
