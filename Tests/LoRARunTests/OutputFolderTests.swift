import Foundation
import LoRARun
import LoRATraining
import Testing

/// Which output folders a run may start in: a finished run's adapter is never overwritten
/// unasked, and `--resume auto` begins again a run that stopped before its first checkpoint.
@Suite struct OutputFolderTests {
  /// A new folder holding `files` (empty contents).
  func folder(holding files: [String]) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("sld-output-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    for file in files { try Data().write(to: url.appendingPathComponent(file)) }
    return url
  }

  func plan(_ output: URL, resume: String?) throws -> TrainingPlan {
    var settings = TrainingSettings()
    settings.data = "train.jsonl"
    settings.output = output.path
    return try TrainingPlan(settings, model: "base.gguf", resume: resume)
  }

  @Test func onlyMetricsBeginAgainUnderResumeAuto() throws {
    let output = try folder(holding: ["metrics.jsonl", "log"])
    defer { try? FileManager.default.removeItem(at: output) }
    #expect(throws: (any Error).self) { try plan(output, resume: nil) }
    #expect(try plan(output, resume: "auto").resume == "auto")
  }

  @Test(arguments: ["adapter_model.safetensors", "adapter_config.json"])
  func aFinishedAdapterIsNeverOverwrittenUnasked(file: String) throws {
    let output = try folder(holding: [file, "metrics.jsonl"])
    defer { try? FileManager.default.removeItem(at: output) }
    for resume in [nil, "auto"] {
      do {
        _ = try plan(output, resume: resume)
        Issue.record("a folder holding \(file) was accepted with resume \(resume ?? "none")")
      } catch {
        #expect("\(error)".contains("already holds a run"), "\(error)")
      }
    }
  }
}
