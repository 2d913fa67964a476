import Foundation
import LoRAComm
import LoRACoordinator
import LoRATraining
import Testing

@testable import swift_lora_dist

/// `train --jobs` through the binary: adapters fused and alone from one job file, each with
/// its own outputs and one combined report; a bad job file fails before any model loads.
@Suite(.serialized, .enabled(if: TrainCommandTests.modelAvailable, "the default model is not in the cache"))
struct JobRunTests {
  @Test func aJobTrainsFusedAndSeparateAdaptersWithTheirOwnOutputs() throws {
    let folder = try TrainCommandTests.Folder()
    _ = try folder.write("sums.jsonl", TrainCommandTests.arithmetic)
    _ = try folder.write(
      "words.jsonl", TrainCommandTests.arithmetic.replacingOccurrences(of: "plus", with: "and"))
    let job = try folder.write(
      "jobs.yaml",
      """
      model: \(TrainCommandTests.model)
      output: out
      defaults: { steps: 2, batch_size: 2, micro_batch: 1, max_seq_len: 32, lr: 1.0e-3, checkpoint_every: 0 }
      adapters:
        - { name: sums, data: sums.jsonl, format: prompt_completion, group: pair, validation_data: sums.jsonl }
        - { name: words, data: words.jsonl, format: prompt_completion, group: pair, rank: 4 }
        - { name: alone, data: sums.jsonl, format: prompt_completion, tokens_per_batch: 40 }
      """)
    let outcome = try CommandRunner.run(["train", "--jobs", job, "--threads", "1"])
    #expect(outcome.status == 0, "\(outcome.errors)")
    // Not a terminal: JSON lines only, the fused run's own messages too.
    let plain = Self.nonJSONLines(outcome.output)
    #expect(plain.isEmpty, "lines that are not JSON: \(plain)")
    #expect(
      Self.jsonLines(outcome.output).contains {
        $0["event"] as? String == "group" && $0["placement"] as? String == "fused"
          && $0["adapters"] as? [String] == ["sums", "words"]
      }, "\(outcome.output)")
    for name in ["sums", "words", "alone"] {
      for file in ["adapter_config.json", "adapter_model.safetensors", "metrics.jsonl", "report.html"] {
        #expect(folder.exists("out/\(name)/\(file)"), "\(name)/\(file)")
      }
      #expect(folder.exists("out/\(name)/checkpoints/step-00000002.sldckpt"), "\(name) checkpoint")
    }
    #expect(folder.exists("out/report.html"))
    // tokens_per_batch 40 over examples of 13 tokens on average: batches of 3 sequences.
    let alone = try String(contentsOfFile: folder.path + "/out/alone/training_config.json", encoding: .utf8)
    #expect(alone.contains("\"training.batchSize\" : \"3\""), "\(alone)")
    let words = try String(contentsOfFile: folder.path + "/out/words/adapter_config.json", encoding: .utf8)
    #expect(words.contains("\"r\" : 4"))
    let metrics = try String(contentsOfFile: folder.path + "/out/sums/metrics.jsonl", encoding: .utf8)
    #expect(metrics.contains("\"adapter\":\"sums\"") && metrics.contains("\"event\":\"validation\""))
    // The fused adapter's base validation loss (update 0) and its unit's line, for the dashboard.
    let lines = Self.jsonLines(metrics)
    #expect(
      lines.contains { $0["event"] as? String == "validation" && $0["step"] as? Int == 0 }, "\(metrics)")
    let unit = try #require(lines.first { $0["event"] as? String == "unit" }, "\(metrics)")
    #expect(unit["adapters"] as? [String] == ["sums", "words"] && unit["placement"] as? String == "fused")
    #expect(unit["step"] as? Int == 2 && unit["ending"] as? String == "finished")
    let started = try #require((unit["started_at"] as? NSNumber)?.doubleValue)
    let ended = try #require((unit["finished_at"] as? NSNumber)?.doubleValue)
    #expect(started <= ended && ended <= Date().timeIntervalSince1970)
    // The dashboard: a row per adapter, a curve per adapter with validation, one bar per unit.
    let report = try String(contentsOfFile: folder.path + "/out/report.html", encoding: .utf8)
    #expect(report.components(separatedBy: "<tr class=\"adapter finished\"").count - 1 == 3, "\(report)")
    #expect(report.components(separatedBy: "<g class=\"unit\"").count - 1 == 2, "\(report)")
    #expect(report.contains("<a href=\"sums/report.html\">sums</a>") && !report.contains("<iframe"))
  }

  @Test func successiveHalvingRetiresTheWorseMemberAndRemembersIt() throws {
    let folder = try TrainCommandTests.Folder()
    _ = try folder.write("sums.jsonl", TrainCommandTests.arithmetic)
    let job = try folder.write(
      "jobs.yaml",
      """
      model: \(TrainCommandTests.model)
      output: out
      defaults: { steps: 4, batch_size: 2, micro_batch: 1, max_seq_len: 32, lr: 1.0e-3, checkpoint_every: 0 }
      adapters:
        - name: s
          data: sums.jsonl
          validation_data: sums.jsonl
          format: prompt_completion
          sweep: { rank: [2, 4] }
          successive_halving: { rungs: [2] }
      """)
    let first = try CommandRunner.run(["train", "--jobs", job, "--threads", "1"])
    #expect(first.status == 0, "\(first.errors)")
    #expect(first.output.contains("rank") && first.output.contains("was enough"), "\(first.output)")
    let retired = ["s-r2", "s-r4"].filter { folder.exists("out/\($0)/retired.json") }
    #expect(retired.count == 1, "\(retired)")
    let survivor = retired == ["s-r2"] ? "s-r4" : "s-r2"
    #expect(folder.exists("out/\(retired[0])/checkpoints/step-00000002.sldckpt"))
    #expect(folder.exists("out/\(survivor)/checkpoints/step-00000004.sldckpt"))
    // Run again: the retired member stays where it stopped.
    #expect(try CommandRunner.run(["train", "--jobs", job, "--threads", "1"]).status == 0)
    #expect(!folder.exists("out/\(retired[0])/checkpoints/step-00000004.sldckpt"))
  }

  /// Lines of 60 characters outside the Basic Multilingual Plane: the planner guesses 4
  /// characters per token (16 tokens), the byte-level tokenizer makes several tokens of each
  /// (cut at 64). `heavy` is estimated lighter than `light` but is far heavier.
  static let heavyData =
    (0..<40).map { #"{"text": "\#(String(repeating: "\u{1D518}", count: 60)) \#($0)"}"# }
    .joined(separator: "\n") + "\n"
  static let lightData =
    (0..<40).map {
      #"{"text": "the cat sat on the mat and the dog sat on the log, then the bird flew over the tree and sang \#($0)"}"#
    }.joined(separator: "\n") + "\n"

  /// Name → SHA-256 of every file under `folder`/`subfolder`.
  static func digests(_ folder: TrainCommandTests.Folder, _ subfolder: String) throws -> [String: Data] {
    let root = folder.path + "/" + subfolder
    var result: [String: Data] = [:]
    for name in FileManager.default.enumerator(atPath: root)?.compactMap({ $0 as? String }) ?? [] {
      var directory: ObjCBool = false
      guard FileManager.default.fileExists(atPath: root + "/" + name, isDirectory: &directory),
        !directory.boolValue
      else { continue }
      result[name] = try Data(contentsOf: URL(fileURLWithPath: root + "/" + name))
    }
    return result
  }

  /// The lines of `output` that do not parse as JSON.
  static func nonJSONLines(_ output: String) -> [Substring] {
    output.split(separator: "\n").filter { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) == nil }
  }

  static func jsonLines(_ output: String) -> [[String: Any]] {
    output.split(separator: "\n").compactMap {
      try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
    }
  }

  @Test func queuedAdaptersGoToTheGroupThatIsFreeFirstNotTheEstimatedOne() throws {
    let folder = try TrainCommandTests.Folder()
    _ = try folder.write("heavy.jsonl", Self.heavyData)
    _ = try folder.write("light.jsonl", Self.lightData)
    _ = try folder.write("sums.jsonl", TrainCommandTests.arithmetic)
    let job = try folder.write(
      "jobs.yaml",
      """
      model: \(TrainCommandTests.model)
      output: out
      defaults: { steps: 6, batch_size: 2, micro_batch: 1, max_seq_len: 64, lr: 1.0e-3, checkpoint_every: 0, format: text }
      adapters:
        - { name: heavy, data: heavy.jsonl, placement: separate }
        - { name: light, data: light.jsonl, placement: separate }
        - { name: c, data: sums.jsonl, format: prompt_completion, steps: 2 }
        - { name: d, data: sums.jsonl, format: prompt_completion, steps: 2 }
      """)
    // The estimate: heavy (group 0) ends first, so both queued adapters go there.
    let planned = try CommandRunner.run(["plan", "--jobs", job, "-np", "2", "--json"])
    #expect(planned.status == 0, "\(planned.errors)")
    let document = try JSONDecoder().decode(PlanDocument.self, from: Data(planned.output.utf8))
    #expect(
      document.plan.groups.map { $0.runs.map(\.adapters) } == [[["heavy"], ["c"], ["d"]], [["light"]]])
    #expect(document.plan.queuedUnits.map(\.adapters) == [["c"], ["d"]])
    let text = try CommandRunner.run(["plan", "--jobs", job, "-np", "2"])
    #expect(text.output.contains("are taken at run time"), "\(text.output)")

    // The run: light (group 1) is done long before heavy, and its group takes c.
    let outcome = try CommandRunner.run(["train", "--jobs", job, "--local-ranks", "2", "--threads", "1"])
    #expect(outcome.status == 0, "\(outcome.errors)")
    let lines = Self.jsonLines(outcome.output)
    // Not a terminal: every line of the output is a JSON object, the job's and groups' too.
    let plain = Self.nonJSONLines(outcome.output)
    #expect(plain.isEmpty, "lines that are not JSON: \(plain)")
    #expect(lines.contains { $0["event"] as? String == "job" && $0["groups"] as? Int == 2 })
    #expect(lines.filter { $0["event"] as? String == "group" }.count == 2)
    let claims = lines.filter { $0["event"] as? String == "queued" }
    #expect(claims.map { $0["adapters"] as? [String] ?? [] }.sorted { $0[0] < $1[0] } == [["c"], ["d"]])
    #expect(
      claims.first { ($0["adapters"] as? [String]) == ["c"] }?["group"] as? Int == 1,
      "c went to group \(claims.map { "\($0)" })")
    #expect(claims.map { $0["position"] as? Int ?? 0 }.sorted() == [1, 2])
    // Several groups at once: every adapter's JSON object names its adapter.
    for line in lines
    where ["step", "start", "checkpoint", "finished"].contains(line["event"] as? String ?? "") {
      #expect(["heavy", "light", "c", "d"].contains(line["adapter"] as? String ?? ""), "\(line)")
    }
    for name in ["heavy", "light", "c", "d"] {
      for file in ["adapter_model.safetensors", "metrics.jsonl", "report.html"] {
        #expect(folder.exists("out/\(name)/\(file)"), "\(name)/\(file)")
      }
    }

    // Again: every adapter is finished, so nothing is trained or rewritten.
    let before = try Self.digests(folder, "out")
    let again = try CommandRunner.run(["train", "--jobs", job, "--local-ranks", "2", "--threads", "1"])
    #expect(again.status == 0, "\(again.errors)")
    let skipped = Self.jsonLines(again.output).filter { $0["event"] as? String == "skipped" }
    #expect(Set(skipped.compactMap { $0["adapter"] as? String }) == ["heavy", "light", "c", "d"])
    #expect(!again.output.contains("\"event\":\"step\""))
    let after = try Self.digests(folder, "out")
    #expect(after.keys.sorted() == before.keys.sorted())
    for (name, bytes) in before where name != "report.html" {
      #expect(after[name] == bytes, "\(name) was rewritten")
    }
    // The dashboard written again: every adapter skipped, the timeline of the first run.
    let report = try String(contentsOfFile: folder.path + "/out/report.html", encoding: .utf8)
    #expect(report.components(separatedBy: "<tr class=\"adapter skipped\"").count - 1 == 4, "\(report)")
    #expect(report.contains("group 0 (rank 0)") && report.contains("group 1 (rank 1)"))
    #expect(report.components(separatedBy: "<g class=\"unit\"").count - 1 == 4, "\(report)")
  }

  /// A job stopped while its second adapter trains, run again: the finished adapter is not
  /// touched, the stopped one continues from its checkpoint, the one not started trains.
  @Test func aStoppedJobResumesEveryUnfinishedAdapterAndLeavesFinishedOnes() throws {
    let folder = try TrainCommandTests.Folder()
    _ = try folder.write("sums.jsonl", TrainCommandTests.arithmetic)
    let path = try folder.write(
      "jobs.yaml",
      """
      model: \(TrainCommandTests.model)
      output: out
      defaults: { steps: 2, batch_size: 2, micro_batch: 1, max_seq_len: 32, lr: 1.0e-3, format: prompt_completion }
      adapters:
        - { name: a, data: sums.jsonl, checkpoint_every: 0 }
        - { name: b, data: sums.jsonl, steps: 8, checkpoint_every: 1, keep: 20 }
        - { name: c, data: sums.jsonl, checkpoint_every: 0 }
      """)
    let job = try JobFile.load(path: path)
    let stop = StopRequest()
    // Stop once b has written its second checkpoint.
    let second = folder.path + "/out/b/checkpoints/step-00000002.sldckpt"
    let watcher = Thread {
      let deadline = Date().addingTimeInterval(300)
      while !FileManager.default.fileExists(atPath: second) && Date() < deadline {
        Thread.sleep(forTimeInterval: 0.005)
      }
      stop.request()
    }
    watcher.start()
    let progress = Progress(forceJSON: true)
    let stopped = try JobRun(job: job, progress: progress, stop: stop).execute(
      world: LocalCommunicator.single())
    #expect(stopped)
    #expect(folder.exists("out/a/report.html") && !folder.exists("out/b/report.html"))
    #expect(!folder.exists("out/c"))
    let a = try Self.digests(folder, "out/a")
    let bBefore = try Self.digests(folder, "out/b/checkpoints")
    let stoppedAt = bBefore.keys.sorted().last!
    #expect(bBefore.count >= 2 && bBefore.count < 8, "\(bBefore.keys.sorted())")

    let again = try JobRun(job: job, progress: progress, stop: StopRequest()).execute(
      world: LocalCommunicator.single())
    #expect(!again)
    #expect(try Self.digests(folder, "out/a") == a, "the finished adapter was rewritten")
    let bAfter = try Self.digests(folder, "out/b/checkpoints")
    #expect(bAfter.keys.sorted().last == "step-00000008.sldckpt")
    for (name, bytes) in bBefore {
      #expect(bAfter[name] == bytes, "b's \(name) was written again: b restarted instead of resuming")
    }
    let metrics = try String(contentsOfFile: folder.path + "/out/b/metrics.jsonl", encoding: .utf8)
    let steps = Self.jsonLines(metrics).filter { $0["event"] as? String == "step" }.compactMap {
      $0["step"] as? Int
    }
    #expect(steps == Array(1...8), "\(stoppedAt): \(steps)")
    for name in ["b", "c"] { #expect(folder.exists("out/\(name)/report.html")) }
  }

  @Test func progressLinesOfSeveralGroupsNameTheirAdapter() {
    let labelled = Progress(forceJSON: false).labelled("devil")
    #expect(!labelled.live)
    #expect(
      labelled.lines("step 12/40  loss 3.91\nsecond") == "[devil] step 12/40  loss 3.91\n[devil] second")
    let step = StepMetrics(
      step: 12, totalSteps: 40, loss: 3.91, learningRate: 1e-3, gradientNorm: 1, tokens: 10, trainedTokens: 8,
      seconds: 0.5, tokensPerSecond: 20, epoch: 0.5, etaSeconds: 14)
    let line = labelled.lines(Progress.text(.step(step)))
    #expect(line.hasPrefix("[devil] step 12/40  loss 3.9100") && !line.contains("\r"), "\(line)")
    // One group keeps today's display: no label, the step line rewritten in place on a terminal.
    #expect(Progress(forceJSON: true).labelled("devil").jsonLines)
    #expect(Progress(forceJSON: false).lines("x").hasSuffix("x"))
  }

  @Test func aBadJobFileFailsBeforeLoadingTheModel() throws {
    let folder = try TrainCommandTests.Folder()
    _ = try folder.write("sums.jsonl", TrainCommandTests.arithmetic)
    let job = try folder.write(
      "jobs.yaml",
      """
      model: /nonexistent/model.gguf
      adapters:
        - name: sums
          data: sums.jsonl
          lerning_rate: 0.1
      """)
    let outcome = try CommandRunner.run(["train", "--jobs", job])
    #expect(outcome.status != 0)
    #expect(
      outcome.errors.contains("jobs.yaml:5") && outcome.errors.contains("lerning_rate"), "\(outcome.errors)")
  }

  /// A run flag beside --jobs would be left out of the job: refused by name, before the job
  /// file is read; the process's own flags go with it.
  @Test func runFlagsBesideAJobFileAreRefusedByName() throws {
    let refused: [([String], String)] = [
      (["--lr", "0.1"], "--lr cannot be used with --jobs"),
      (["--rank", "4", "--no-eos"], "--no-eos, --rank cannot be used with --jobs"),
      (["--base-precision", "f32"], "--base-precision cannot be used with --jobs"),
      (["--config", "run.yaml"], "--config cannot be used with --jobs"),
      (["--resume", "auto", "--threads", "1"], "--resume cannot be used with --jobs"),
    ]
    for (flags, message) in refused {
      let outcome = try CommandRunner.run(["train", "--jobs", "/nonexistent/jobs.yaml"] + flags)
      #expect(outcome.status != 0 && outcome.errors.contains(message), "\(flags): \(outcome.errors)")
    }
    let allowed = try CommandRunner.run([
      "train", "--jobs", "/nonexistent/jobs.yaml", "--threads", "1", "--local-ranks", "2", "--no-pin",
      "--numa-copies", "--json",
    ])
    #expect(allowed.status != 0 && allowed.errors.contains("cannot read the job file"), "\(allowed.errors)")
  }
}
