import Foundation
import LoRAComm
import LoRARun
import LoRATraining
import Testing

/// `rank: auto` in a job file: the adapter climbs its ladder as a unit of its own beside a
/// plain adapter, leaves the kept rung's adapter, the decisions and the job report's curve;
/// stopped in a later rung and run again, it ends bit for bit as one run through.
@Suite struct RankAutoJobTests {
  /// A plain adapter and one that climbs 1 → 2 → 4 (tolerance 0: grows while it improves).
  static let adapters = """
      - { name: plain, data: b.jsonl, validation_data: b-valid.jsonl }
      - name: auto
        data: a.jsonl
        validation_data: a-valid.jsonl
        rank: auto
        rank_ladder: [1, 2, 4]
        rank_tolerance: 0
    """

  /// The `rank_rung` lines of `auto`'s metrics.jsonl.
  static func rungs(_ fixture: RunFixture) throws -> [[String: Any]] {
    try fixture.metrics("auto").filter { $0["event"] as? String == "rank_rung" }
  }

  @Test func aJobClimbsTheLadderBesideAPlainAdapter() throws {
    let fixture = try RunFixture()
    let (events, stopped) = try fixture.run(try fixture.job(Self.adapters, placement: "shared"), ranks: 2)
    #expect(!stopped)
    let search = try JSONDecoder().decode(
      RankSearchDocument.self,
      from: Data(contentsOf: fixture.output("auto").appendingPathComponent("rank-search.json")))
    #expect(search.ladder == [1, 2, 4] && search.tolerance == 0)
    #expect(!search.rungs.isEmpty && search.rungs.map(\.rank) == Array([1, 2, 4].prefix(search.rungs.count)))
    #expect(search.rungs.allSatisfy { $0.updates == 6 })
    #expect(search.updatesTrained == 6 * search.rungs.count)
    // The kept rung's adapter is the adapter's output, with its rank.
    let kept = fixture.output("auto").appendingPathComponent("rank-\(search.chosenRank)")
    #expect(
      try fixture.adapterBytes("auto")
        == Data(contentsOf: kept.appendingPathComponent("adapter_model.safetensors")))
    let config = try JSONSerialization.jsonObject(
      with: Data(contentsOf: fixture.output("auto").appendingPathComponent("adapter_config.json")))
    #expect((config as? [String: Any])?["r"] as? Int == search.chosenRank)
    // One decision per rung in metrics.jsonl, at the updates spent so far.
    let lines = try Self.rungs(fixture)
    #expect(lines.compactMap { $0["step"] as? Int } == (1...search.rungs.count).map { $0 * 6 })
    #expect(
      lines.filter { $0["kept"] as? Bool == true }.compactMap { $0["rank"] as? Int } == [search.chosenRank])
    // Every rung's updates reported, and the plain adapter trained as usual.
    let rungEvents = events.filter { if case .rankRung = $0 { true } else { false } }
    #expect(rungEvents.count == search.rungs.count)
    #expect(try fixture.steps("plain", event: "step") == Array(1...6))
    // The job report draws one curve across the rungs: the base, then each rung's end.
    let read = JobReport.Adapter.read(name: "auto", output: fixture.output("auto"))
    #expect(read.complete && read.steps == search.updatesTrained)
    #expect(read.curve.map(\.0) == [0] + (1...search.rungs.count).map { $0 * 6 })
    #expect(read.curve.last?.1 == search.rungs.last?.validationLoss)
    #expect(
      FileManager.default.fileExists(atPath: fixture.folder.appendingPathComponent("out/report.html").path))
  }

  @Test func aSearchStoppedInALaterRungResumesToTheSameAdapter() throws {
    let through = try RunFixture()
    _ = try through.run(try through.job(Self.adapters, placement: "shared"), ranks: 2)
    let expected = try JSONDecoder().decode(
      RankSearchDocument.self,
      from: Data(contentsOf: through.output("auto").appendingPathComponent("rank-search.json")))
    try #require(expected.rungs.count >= 2, "the ladder grew at least once: \(expected.rungs)")

    let resumed = try RunFixture()
    let job = try resumed.job(Self.adapters, placement: "shared")
    let stop = StopRequest()
    let (_, stopped) = try resumed.run(
      job, ranks: 2, stop: stop,
      onEvent: { event in
        if case .step(let ref, let m) = event, ref.output.hasSuffix("/rank-2"), m.step == 3 { stop.request() }
      })
    #expect(stopped)
    #expect(
      !FileManager.default.fileExists(
        atPath: resumed.output("auto").appendingPathComponent("rank-search.json").path))
    let (events, again) = try resumed.run(job, ranks: 2)
    #expect(!again)
    #expect(try resumed.adapterBytes("auto") == through.adapterBytes("auto"))
    let search = try JSONDecoder().decode(
      RankSearchDocument.self,
      from: Data(contentsOf: resumed.output("auto").appendingPathComponent("rank-search.json")))
    #expect(search == expected)
    // The rung finished before the stop was restored, not trained again.
    let retrained = events.compactMap { event -> String? in
      if case .step(let ref, _) = event, ref.output.hasSuffix("/rank-1") { ref.output } else { nil }
    }
    #expect(retrained.isEmpty)

    // A third run finds the search finished and skips it.
    let (third, _) = try resumed.run(job, ranks: 2)
    #expect(!third.contains { if case .step = $0 { true } else { false } })
  }
}
