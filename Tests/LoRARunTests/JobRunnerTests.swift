import Foundation
import LoRAComm
import LoRAKernels
import LoRARun
import LoRATraining
import Testing

/// The runner as a library, without the binary: a job on 2 thread-ranks and the tiny model
/// with plain adapters, a fused sweep with successive halving and the queue; a stop and the
/// resume after it; the checkpoint cadence alone and fused.
@Suite struct JobRunnerTests {
  /// Three plain adapters and a sweep of four members halved after 3 updates.
  static let adapters = """
      - { name: a, data: a.jsonl, validation_data: a-valid.jsonl }
      - { name: b, data: b.jsonl, validation_data: b-valid.jsonl }
      - { name: c, data: c.jsonl, validation_data: c-valid.jsonl }
      - name: s
        data: a.jsonl
        validation_data: a-valid.jsonl
        sweep: { rank: [2, 4], lr: [1.0e-3, 1.0e-2] }
        successive_halving: { rungs: [3], keep: 0.5 }
    """
  static let members = ["s-r2-lr0.001", "s-r2-lr0.01", "s-r4-lr0.001", "s-r4-lr0.01"]
  static let names = ["a", "b", "c"] + members

  @Test func aJobOnTwoRanksTrainsEveryAdapterOnceWithHalvingAndTheQueue() throws {
    let fixture = try RunFixture()
    let job = try fixture.job(Self.adapters)
    let (events, stopped) = try fixture.run(job, ranks: 2)
    #expect(!stopped)
    // Each adapter finished exactly once, whichever group trained it.
    var finished: [String] = []
    var claimed: [String] = []
    var halved: [String: Bool] = [:]
    for event in events {
      switch event {
      case .finished(let ref, _, _, _): finished.append(ref.name ?? "")
      case .claimed(_, let adapters, _, _): claimed += adapters
      case .halved(let ref, let step, _, let kept):
        #expect(step == 3)
        halved[ref.name ?? ""] = kept
      default: break
      }
    }
    #expect(finished.sorted() == Self.names.sorted())
    #expect(Set(claimed).count == claimed.count, "a queued adapter was claimed twice: \(claimed)")
    #expect(!claimed.isEmpty, "2 ranks with 4 units leave some to the queue")
    // Halving kept the better half of the sweep by validation loss at the rung.
    #expect(halved.count == 4 && halved.values.filter { $0 }.count == 2)
    for name in Self.members {
      let steps = try fixture.steps(name, event: "step")
      #expect(steps == Array(1...(halved[name] == true ? 6 : 3)), "\(name): \(steps)")
    }
    for name in ["a", "b", "c"] {
      #expect(try fixture.steps(name, event: "step") == Array(1...6))
      // The base's loss (update 0), then the one after the last update.
      let validations = try fixture.steps(name, event: "validation")
      #expect(validations == [0, 6], "\(name): \(validations)")
      #expect(!(try fixture.adapterBytes(name)).isEmpty)
    }
    #expect(
      FileManager.default.fileExists(atPath: fixture.folder.appendingPathComponent("out/report.html").path))
    // Every unit reports its ranks' time by phase, and each adapter's metrics keep it.
    let phases = events.compactMap { event -> ([PhaseTimes], Int)? in
      if case .phases(_, let perRank, let updates) = event { return (perRank, updates) }
      return nil
    }
    #expect(!phases.isEmpty && phases.allSatisfy { $0.1 > 0 && $0.0.allSatisfy { $0[.frozen] > 0 } })
    for name in ["a", "b", "c"] { #expect(try fixture.steps(name, event: "phases") == [6], "\(name)") }
  }

  /// A job stopped after a few updates and run again ends with the same adapters as one run
  /// through, bit for bit, and the second run skips what the first finished.
  @Test func aStoppedJobResumesToTheSameAdapters() throws {
    let through = try RunFixture()
    _ = try through.run(try through.job(Self.adapters), ranks: 2)

    let resumed = try RunFixture()
    let job = try resumed.job(Self.adapters)
    let stop = StopRequest()
    let (_, stopped) = try resumed.run(
      job, ranks: 2, stop: stop,
      onEvent: { event in
        if case .step(let ref, let m) = event, ref.name == "s-r4-lr0.01", m.step == 2 { stop.request() }
      })
    #expect(stopped)
    let partial = try resumed.steps("s-r4-lr0.01", event: "step")
    #expect(partial.last! < 6, "stopped at update \(partial.last!)")
    let (events, again) = try resumed.run(job, ranks: 2)
    #expect(!again)
    for name in Self.names {
      #expect(try resumed.adapterBytes(name) == through.adapterBytes(name), "\(name) differs after resume")
      let losses = { (f: RunFixture) in
        try f.metrics(name).filter { $0["event"] as? String == "step" }.map { $0["loss"] as! Double }
      }
      #expect(try losses(resumed) == losses(through), "\(name): step losses differ")
    }
    let skipped = events.compactMap { if case .skipped(let ref, _, _) = $0 { ref.name } else { nil } }
    let finished = events.compactMap { if case .finished(let ref, _, _, _) = $0 { ref.name } else { nil } }
    #expect(Set(skipped).isDisjoint(with: finished))
    #expect(Set(skipped + finished) == Set(Self.names))
  }

  /// Checkpoints every 2 updates and after the last, for one adapter alone (shared over the
  /// ranks) and for adapters fused through one pass: one due check serves both.
  @Test(arguments: ["shared", "fused"]) func checkpointsFollowTheCadence(placement: String) throws {
    let fixture = try RunFixture()
    let adapters =
      placement == "fused"
      ? """
        - { name: a, data: a.jsonl, steps: 5 }
        - { name: b, data: b.jsonl, steps: 3 }
      """
      : """
        - { name: a, data: a.jsonl, steps: 5 }
      """
    let (_, stopped) = try fixture.run(try fixture.job(adapters, placement: placement), ranks: 2)
    #expect(!stopped)
    #expect(try fixture.steps("a", event: "checkpoint") == [2, 4, 5])
    if placement == "fused" { #expect(try fixture.steps("b", event: "checkpoint") == [2, 3]) }
  }
}
