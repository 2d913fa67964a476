import Foundation
import LoRAServe
import Testing

@testable import swift_lora_dist

/// Checkpoints through the binary on the default model: a stopped run resumed with the same
/// command gives the same adapter byte for byte; bad resumes fail and lose nothing.
@Suite(.serialized, .enabled(if: TrainCommandTests.modelAvailable, "the default model is not in the cache"))
struct CheckpointCommandTests {
  static let model = TrainCommandTests.model
  static let data = TrainCommandTests.arithmetic

  func train(_ output: String, data: String, _ extra: [String] = []) throws -> CommandRunner.Outcome {
    try CommandRunner.run(
      [
        "train", "--model", Self.model, "--data", data, "--output", output, "--steps", "4", "--batch-size",
        "2",
        "--micro-batch", "1", "--max-seq-len", "32", "--lr", "1e-3", "--dropout", "0.1", "--seed", "3",
        "--checkpoint-every", "2",
        "--full-every", "2", "--keep", "5", "--json",
      ] + extra)
  }

  @Test func stoppedRunResumesToTheSameAdapter() throws {
    let folder = try TrainCommandTests.Folder()
    let data = try folder.write("ids.jsonl", Self.data)
    let a = folder.path + "/a"
    let whole = try train(a, data: data)
    #expect(whole.status == 0, "\(whole.errors)")
    let checkpoints = try FileManager.default.contentsOfDirectory(atPath: a + "/checkpoints").sorted()
    #expect(checkpoints == ["step-00000002.sldckpt", "step-00000004.sldckpt"])
    #expect(whole.output.contains("\"event\":\"checkpoint\""))
    // The route signature for serve's "auto": the base's mean last hidden state of sampled prompts.
    let signature = try JSONDecoder().decode(
      RouteSignature.self, from: Data(contentsOf: URL(fileURLWithPath: a + "/route-signature.json")))
    #expect(signature.prompts > 0 && signature.mean.count > 0 && signature.mean.contains { $0 != 0 })

    // The same command again on the finished run: nothing trained, nothing rewritten.
    func contents(_ root: String) throws -> [String: Data] {
      let names = FileManager.default.enumerator(atPath: root)?.compactMap { $0 as? String } ?? []
      return try Dictionary(
        uniqueKeysWithValues: names.filter { !$0.hasSuffix("/") && !$0.hasSuffix("checkpoints") }.map {
          ($0, try Data(contentsOf: URL(fileURLWithPath: root + "/" + $0)))
        })
    }
    let finished = try contents(a)
    let again = try train(a, data: data, ["--resume", "auto"])
    #expect(again.status == 0, "\(again.errors)")
    #expect(again.output.contains("\"event\":\"skipped\"") && !again.output.contains("\"event\":\"step\""))
    #expect(try contents(a) == finished, "a finished run's outputs were rewritten")

    // A run stopped after update 2: its folder as the full run left it at that point.
    let b = folder.path + "/b"
    try FileManager.default.copyItem(atPath: a, toPath: b)
    for name in ["checkpoints/step-00000004.sldckpt", "adapter_model.safetensors", "adapter_config.json"] {
      try FileManager.default.removeItem(atPath: b + "/" + name)
    }
    let resumed = try train(b, data: data, ["--resume", b])
    #expect(resumed.status == 0, "\(resumed.errors)")
    #expect(resumed.output.contains("resuming from") && resumed.output.contains("step-00000002.sldckpt"))
    let first = try Data(contentsOf: URL(fileURLWithPath: a + "/adapter_model.safetensors"))
    let second = try Data(contentsOf: URL(fileURLWithPath: b + "/adapter_model.safetensors"))
    #expect(first == second)
    let metrics = try String(contentsOfFile: b + "/metrics.jsonl", encoding: .utf8)
    #expect(metrics.split(separator: "\n").filter { $0.contains("\"event\":\"step\"") }.count == 4)

    // A damaged newest checkpoint is reported and skipped.
    let c = folder.path + "/c"
    try FileManager.default.copyItem(atPath: a, toPath: c)
    let newest = c + "/checkpoints/step-00000004.sldckpt"
    let bytes = try Data(contentsOf: URL(fileURLWithPath: newest))
    try bytes.prefix(bytes.count - 20).write(to: URL(fileURLWithPath: newest))
    let skipping = try train(c, data: data, ["--resume", c + "/checkpoints"])
    #expect(skipping.status == 0, "\(skipping.errors)")
    #expect(skipping.errors.contains("warning: skipping") && skipping.errors.contains("truncated"))
    #expect(try Data(contentsOf: URL(fileURLWithPath: c + "/adapter_model.safetensors")) == first)
  }

  @Test func resumeWithOtherSettingsFailsAndKeepsTheCheckpoints() throws {
    let folder = try TrainCommandTests.Folder()
    let data = try folder.write("ids.jsonl", Self.data)
    let a = folder.path + "/a"
    #expect(try train(a, data: data).status == 0)
    let before = try Data(contentsOf: URL(fileURLWithPath: a + "/checkpoints/step-00000004.sldckpt"))
    let other = try train(a, data: data, ["--resume", a, "--seed", "4"])
    #expect(other.status != 0)
    #expect(other.errors.contains("seed 3 in the checkpoint, 4 now"), "\(other.errors)")
    #expect(try Data(contentsOf: URL(fileURLWithPath: a + "/checkpoints/step-00000004.sldckpt")) == before)
    let conflicting = try train(a, data: data, ["--resume", a, "--overwrite"])
    #expect(conflicting.status != 0 && conflicting.errors.contains("--overwrite"))
    // A checkpoint that cannot be written stops training with the reason and no adapter.
    let blocked = folder.path + "/blocked"
    try FileManager.default.createDirectory(atPath: blocked, withIntermediateDirectories: true)
    try Data("not a folder".utf8).write(to: URL(fileURLWithPath: blocked + "/checkpoints"))
    let stopped = try train(blocked, data: data)
    #expect(stopped.status != 0)
    #expect(stopped.errors.contains("cannot write checkpoint"), "\(stopped.errors)")
    #expect(!folder.exists("blocked/adapter_model.safetensors"))
    let missing = try train(folder.path + "/z", data: data, ["--resume", folder.path + "/nothing"])
    #expect(missing.status != 0 && missing.errors.contains("no such file or folder"))
  }

  @Test func inspectExportAndImportRoundTrip() throws {
    let folder = try TrainCommandTests.Folder()
    let data = try folder.write("ids.jsonl", Self.data)
    let run = folder.path + "/run"
    #expect(try train(run, data: data).status == 0)
    let checkpoint = run + "/checkpoints/step-00000004.sldckpt"

    let inspect = try CommandRunner.run(["inspect", checkpoint, "--verify", "--filters"])
    #expect(inspect.status == 0, "\(inspect.errors)")
    for text in [
      "kind: resumable", "training: update 4 of 4", "adamw.exp_avg_sq", "verified:", "bitshuffle",
      "scale alpha/r",
    ] {
      #expect(inspect.output.contains(text), "missing \(text) in \(inspect.output)")
    }
    #expect(try CommandRunner.run(["inspect", run]).output.contains("step-00000004.sldckpt"))

    // PEFT export equals the adapter train wrote; import brings it back unchanged.
    let peft = folder.path + "/peft"
    let exported = try CommandRunner.run(["export", run, "--format", "peft", "--output", peft])
    #expect(exported.status == 0, "\(exported.errors)")
    #expect(
      try Data(contentsOf: URL(fileURLWithPath: peft + "/adapter_model.safetensors"))
        == Data(contentsOf: URL(fileURLWithPath: run + "/adapter_model.safetensors")))
    let again = try CommandRunner.run(["export", run, "--format", "peft", "--output", peft])
    #expect(again.status != 0 && again.errors.contains("--overwrite"))
    let imported = folder.path + "/imported.sldckpt"
    let importing = try CommandRunner.run(["import", peft, "--model", Self.model, "--output", imported])
    #expect(importing.status == 0, "\(importing.errors)")
    let roundTrip = folder.path + "/peft2"
    #expect(
      try CommandRunner.run(["export", imported, "--format", "peft", "--output", roundTrip]).status == 0)
    #expect(
      try Data(contentsOf: URL(fileURLWithPath: roundTrip + "/adapter_model.safetensors"))
        == Data(contentsOf: URL(fileURLWithPath: peft + "/adapter_model.safetensors")))

    // bf16 weights-only export is about half the size and says so.
    let half = folder.path + "/half.sldckpt"
    #expect(
      try CommandRunner.run([
        "export", run, "--format", "checkpoint", "--precision", "bf16", "--output", half,
      ])
      .status == 0)
    let halfInspect = try CommandRunner.run(["inspect", half, "--verify"])
    #expect(halfInspect.output.contains("weights only (bf16)"), "\(halfInspect.output)")

    // A GGUF LoRA export loads back through --adapter, as do the checkpoint and the folder.
    let gguf = folder.path + "/adapter.gguf"
    #expect(try CommandRunner.run(["export", run, "--format", "gguf", "--output", gguf]).status == 0)
    var outputs: [String] = []
    for adapter in [run, checkpoint, peft, gguf] {
      let generated = try CommandRunner.run([
        "generate", "--model", Self.model, "--adapter", adapter, "--prompt", "What is 3 plus 3?",
        "--max-tokens", "4",
        "--temperature", "0",
      ])
      #expect(generated.status == 0, "\(adapter): \(generated.errors)")
      outputs.append(generated.output.components(separatedBy: "\n").filter { !$0.isEmpty }.last ?? "")
    }
    #expect(Set(outputs).count == 1, "\(outputs)")

    // Damaged files are refused with what is wrong.
    let damaged = folder.path + "/damaged.sldckpt"
    var bytes = try Data(contentsOf: URL(fileURLWithPath: checkpoint))
    bytes[bytes.count / 2] ^= 0xFF
    try bytes.write(to: URL(fileURLWithPath: damaged))
    let bad = try CommandRunner.run(["inspect", damaged, "--verify"])
    #expect(bad.status != 0 && bad.errors.contains("corrupt"), "\(bad.errors)")
  }
}
