import Foundation
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
    let missing = try train(folder.path + "/z", data: data, ["--resume", folder.path + "/nothing"])
    #expect(missing.status != 0 && missing.errors.contains("no such file or folder"))
  }
}
