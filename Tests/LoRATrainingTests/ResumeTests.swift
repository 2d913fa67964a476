import Foundation
import LoRACheckpoint
import LoRAKernels
import Testing

@testable import LoRAModel
@testable import LoRATraining

/// Stopping and resuming: the same adapter, bit for bit, as the run that never stopped.
@Suite struct ResumeTests {
  let base = TrainerTests()

  func folder() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("sld-resume-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
  }

  func checkpointing(_ trainer: Trainer, _ folder: URL, every: Int, fullEvery: Int) throws
    -> Trainer.Checkpointing
  {
    Trainer.Checkpointing(
      store: try CheckpointStore(folder: folder, keep: 10, fullEvery: fullEvery), every: every,
      base: .init(fingerprint: "sha256:tiny", source: "tiny-tied", config: trainer.model.config))
  }

  @Test(arguments: [1, 2])
  func resumedRunEqualsTheUninterruptedOne(fullEvery: Int) throws {
    let dir = try folder()
    let uninterrupted = try base.makeTrainer(seed: 5, dropout: 0.1)
    var saved: [CheckpointStore.Saved] = []
    try uninterrupted.run(
      until: 12, checkpoints: checkpointing(uninterrupted, dir, every: 4, fullEvery: fullEvery)
    ) {
      if case .checkpoint(let s) = $0 { saved.append(s) }
    }
    #expect(saved.map(\.step) == [4, 8, 12])
    #expect(
      saved.map { $0.deltaOf != nil } == (fullEvery == 1 ? [false, false, false] : [false, true, false]))

    // Resume from update 8 (a delta when fullEvery is 2) in a fresh trainer.
    let resumed = try base.makeTrainer(seed: 5, dropout: 0.1)
    let reader = try CheckpointReader(path: saved[1].path)
    try resumed.resume(from: reader, fingerprint: "sha256:tiny")
    #expect(resumed.step == 8 && resumed.optimizer.step == 8 && resumed.tokensSeen > 0)
    var losses: [Double] = []
    try resumed.run(until: 12) { if case .step(let m) = $0 { losses.append(m.loss) } }
    #expect(losses.count == 4)
    #expect(resumed.adapter.parameters.values == uninterrupted.adapter.parameters.values)
    #expect(resumed.optimizer.secondMoment.values == uninterrupted.optimizer.secondMoment.values)
    #expect(resumed.tokensSeen == uninterrupted.tokensSeen)
  }

  /// DoRA's magnitudes and PiSSA's frozen term travel in the checkpoint's one buffer.
  @Test(arguments: ["dora", "pissa"])
  func doraAndPiSSARunsResumeBitExact(variant: String) throws {
    let dir = try folder()
    let make = {
      try self.base.makeTrainer(
        seed: 5, useDora: variant == "dora", initialization: variant == "pissa" ? "pissa" : "default")
    }
    let uninterrupted = try make()
    var saved: [CheckpointStore.Saved] = []
    try uninterrupted.run(until: 8, checkpoints: checkpointing(uninterrupted, dir, every: 4, fullEvery: 2)) {
      if case .checkpoint(let s) = $0 { saved.append(s) }
    }
    let resumed = try make()
    try resumed.resume(from: CheckpointReader(path: saved[0].path), fingerprint: "sha256:tiny")
    try resumed.run(until: 8) { _ in }
    #expect(resumed.adapter.parameters.values == uninterrupted.adapter.parameters.values)
    #expect(resumed.optimizer.firstMoment.values == uninterrupted.optimizer.firstMoment.values)
    // The weights-only form loads as what every use takes: DoRA as it is, PiSSA as rank 2r.
    let loaded = try LoRAAdapter.load(checkpoint: CheckpointReader(path: saved[1].path))
    #expect(loaded.parameters.values == uninterrupted.adapter.parameters.values)
    #expect(try loaded.plain().modules.allSatisfy { $0.rank == (variant == "pissa" ? 16 : 8) })
  }

  @Test func resumeRefusesOtherSettingsAndWeightsOnlyFiles() throws {
    let dir = try folder()
    let first = try base.makeTrainer(seed: 5)
    var path = ""
    try first.run(until: 2, checkpoints: checkpointing(first, dir, every: 2, fullEvery: 1)) {
      if case .checkpoint(let s) = $0 { path = s.path }
    }
    let reader = try CheckpointReader(path: path)
    let otherSeed = try base.makeTrainer(seed: 6)
    #expect {
      try otherSeed.resume(from: reader, fingerprint: "sha256:tiny")
    } throws: { "\($0)".contains("seed 5 in the checkpoint, 6 now") }
    #expect {
      try base.makeTrainer(seed: 5, loraPlusRatio: 16).resume(from: reader, fingerprint: "sha256:tiny")
    } throws: { "\($0)".contains("LoRA+ learning rate ratio 1.0 in the checkpoint, 16.0 now") }
    let fresh = try base.makeTrainer(seed: 5)
    #expect {
      try fresh.resume(from: reader, fingerprint: "sha256:other")
    } throws: { "\($0)".contains("sha256:other") && "\($0)".contains("--force") }
    try fresh.resume(from: reader, fingerprint: "sha256:other", force: true)
    #expect(fresh.step == 2)

    // A weights-only file cannot be resumed.
    let header = first.checkpointHeader(
      base: .init(fingerprint: "sha256:tiny", source: "tiny", config: first.model.config), kind: .weights)
    let weightsOnly = dir.appendingPathComponent("weights.sldckpt")
    try CheckpointWriter.writeAtomically(
      try CheckpointWriter.encode(
        header: header, tensors: [CheckpointTensorSource(name: "lora", tensor: first.adapter.parameters)]),
      to: weightsOnly)
    #expect {
      try base.makeTrainer(seed: 5).resume(
        from: try CheckpointReader(path: weightsOnly.path), fingerprint: "sha256:tiny")
    } throws: { "\($0)".contains("weights-only") }
  }
}
