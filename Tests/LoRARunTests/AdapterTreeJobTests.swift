import Foundation
import LoRACheckpoint
import LoRAComm
import LoRAModel
import LoRARun
import LoRATraining
import Testing

/// A tree in a job file on 2 thread-ranks: each child trains over its ancestors' ΔW, so its
/// loss before its first update is its parent's final loss on the same validation data; the
/// chain is recorded with fingerprints; a stopped tree resumes to the same adapters, and a
/// changed ancestor is refused with both fingerprints.
@Suite struct AdapterTreeJobTests {
  /// general → narrow → narrower, and a root beside them; one validation set for all.
  static let adapters = """
      - { name: general, data: a.jsonl, validation_data: a-valid.jsonl }
      - { name: narrow, data: b.jsonl, validation_data: a-valid.jsonl, parent: general }
      - { name: narrower, data: c.jsonl, validation_data: a-valid.jsonl, parent: narrow }
      - { name: bare, data: b.jsonl, validation_data: a-valid.jsonl }
    """

  /// (update, loss) of adapter `name`'s validation lines.
  static func validations(_ fixture: RunFixture, _ name: String) throws -> [(step: Int, loss: Double)] {
    try fixture.metrics(name).filter { $0["event"] as? String == "validation" }.map {
      ($0["step"] as? Int ?? -1, $0["loss"] as? Double ?? .nan)
    }
  }

  static func close(_ x: Double, _ y: Double) -> Bool { abs(x - y) <= 1e-5 * abs(y) }

  @Test func eachChildStartsWhereItsAncestorsEnded() throws {
    let fixture = try RunFixture()
    let (events, stopped) = try fixture.run(try fixture.job(Self.adapters, placement: "separate"), ranks: 2)
    #expect(!stopped)
    // Level by level: a parent finished before its child started.
    let order = events.compactMap { event -> String? in
      if case .started(let ref, _) = event {
        "start \(ref.name ?? "")"
      } else if case .finished(let ref, _, _, _) = event {
        "finish \(ref.name ?? "")"
      } else {
        nil
      }
    }
    for (parent, child) in [("general", "narrow"), ("narrow", "narrower")] {
      let finished = try #require(order.firstIndex(of: "finish \(parent)"))
      let started = try #require(order.firstIndex(of: "start \(child)"))
      #expect(finished < started, "\(order)")
    }
    let (general, narrow, narrower, bare) = try (
      Self.validations(fixture, "general"), Self.validations(fixture, "narrow"),
      Self.validations(fixture, "narrower"), Self.validations(fixture, "bare")
    )
    #expect(
      general.map(\.step) == [0, 6] && narrow.map(\.step) == [0, 6] && narrower.map(\.step) == [0, 6])
    // A fresh child (B = 0) is its ancestors: it starts at its parent's final loss.
    #expect(
      Self.close(narrow[0].loss, general[1].loss), "narrow \(narrow[0].loss), general \(general[1].loss)")
    #expect(
      Self.close(narrower[0].loss, narrow[1].loss), "narrower \(narrower[0].loss), narrow \(narrow[1].loss)")
    // A root starts at the base's loss, which the tree has left behind.
    #expect(Self.close(bare[0].loss, general[0].loss) && !Self.close(bare[0].loss, narrow[0].loss))
    // The chain, root first, with the fingerprints of the adapters it was built over.
    let record = try JSONDecoder().decode(
      AdapterChainRecord.self,
      from: Data(contentsOf: fixture.output("narrower").appendingPathComponent(AdapterChainRecord.fileName)))
    #expect(record.ancestors.map(\.name) == ["general", "narrow"])
    for link in record.ancestors {
      #expect(link.fingerprint == BaseFingerprint.sha256([UInt8](try fixture.adapterBytes(link.name))))
    }
    #expect(
      !FileManager.default.fileExists(
        atPath: fixture.output("general").appendingPathComponent(AdapterChainRecord.fileName).path))
  }

  @Test func aStoppedTreeResumesAndAChangedAncestorIsRefused() throws {
    let through = try RunFixture()
    _ = try through.run(try through.job(Self.adapters, placement: "separate"), ranks: 2)

    let resumed = try RunFixture()
    let job = try resumed.job(Self.adapters, placement: "separate")
    let stop = StopRequest()
    let (_, stopped) = try resumed.run(
      job, ranks: 2, stop: stop,
      onEvent: { event in
        if case .step(let ref, let m) = event, ref.name == "narrower", m.step == 2 { stop.request() }
      })
    #expect(stopped)
    let copy = try RunFixture()
    try? FileManager.default.removeItem(at: copy.folder)
    try FileManager.default.copyItem(at: resumed.folder, to: copy.folder)
    _ = try resumed.run(job, ranks: 2)
    for name in ["general", "narrow", "narrower", "bare"] {
      #expect(try resumed.adapterBytes(name) == through.adapterBytes(name), "\(name)")
    }

    // The same stop, then the root's adapter changes under the stopped grandchild.
    let general = copy.output("general").path
    let model = try LlamaModel.load(path: copy.model).model
    let adapter = try LoRAAdapter.loadPEFT(from: general, model: model.config)
    let before = BaseFingerprint.sha256([UInt8](try copy.adapterBytes("general")))
    adapter.parameters[0] += 0.5
    try adapter.savePEFT(to: general, baseModel: copy.model, overwrite: true)
    let after = BaseFingerprint.sha256([UInt8](try copy.adapterBytes("general")))
    #expect(before != after)
    do {
      _ = try copy.run(try copy.job(Self.adapters, placement: "separate"), ranks: 2)
      Issue.record("a changed ancestor was not refused")
    } catch {
      let message = "\(error)"
      #expect(
        message.contains("'general' of 'narrower' changed") && message.contains(before)
          && message.contains(after),
        "\(message)")
    }
  }

  /// SFT then DPO as a tree: a DPO child trains over its SFT parent, whose model is also its
  /// reference, so the child's first update and its validation before it are at log 2.
  /// Padded passes of a full micro-batch have the shape of the stack the trainer builds
  /// before the chain is attached (those buffers once trained the node without its parent).
  @Test func aDPOChildOfAnSFTParentStartsAtItsReference() throws {
    let fixture = try RunFixture()
    func pairs(_ count: Int, seed: Int) -> String {
      (0..<count).map { i in
        let start = (i * 7 + seed * 13) % 50
        let prompt = (start..<start + 3).map(String.init).joined(separator: " ")
        return
          "{\"prompt\": \"\(prompt)\", \"chosen\": \" \(start + 3) \(start + 4)\", \"rejected\": \" 9 9 9\"}"
      }.joined(separator: "\n") + "\n"
    }
    try fixture.write("p.jsonl", pairs(24, seed: 4))
    try fixture.write("p-valid.jsonl", pairs(6, seed: 5))
    let adapters = """
        - { name: general, data: a.jsonl, validation_data: a-valid.jsonl }
        - { name: aligned, data: p.jsonl, validation_data: p-valid.jsonl, parent: general, objective: dpo, beta: 0.5, padding_free: false }
      """
    let (_, stopped) = try fixture.run(try fixture.job(adapters, placement: "separate"), ranks: 2)
    #expect(!stopped)
    let steps = try fixture.metrics("aligned").filter { $0["event"] as? String == "step" }
    let validation = try Self.validations(fixture, "aligned")
    #expect(steps.count == 6 && validation.map(\.step) == [0, 6])
    #expect(abs((steps.first?["loss"] as? Double ?? 0) - log(2)) < 1e-6, "\(steps.first ?? [:])")
    #expect(abs(validation[0].loss - log(2)) < 1e-6, "\(validation)")
    #expect(validation[1].loss < validation[0].loss, "\(validation)")
    #expect(
      FileManager.default.fileExists(
        atPath: fixture.output("aligned").appendingPathComponent("adapter_model.safetensors").path))
  }
}
