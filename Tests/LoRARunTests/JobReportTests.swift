import Foundation
import LoRACoordinator
import LoRATraining
import Testing

@testable import LoRARun

/// The job's dashboard built from hand-written output folders: two adapters trained one
/// after the other on rank group 1 (the second taken from the queue), a 2 × 2 sweep fused
/// on group 0 whose halving rung at update 20 stopped two members.
struct JobReportTests {
  /// Fixtures/dashboard-job.yaml: devil, fortunes and the sweep arith (rank × lr, a rung at 20).
  static let jobText: String = {
    let url = Bundle.module.url(forResource: "Fixtures/dashboard-job", withExtension: "yaml")!
    return try! String(contentsOf: url, encoding: .utf8)
  }()

  /// The members successive halving stopped at update 20.
  static let halted: Set<String> = ["arith-r2-lr0.0001", "arith-r8-lr0.0001"]
  static let t0 = 1_700_000_000.0

  /// A temporary folder holding the job's outputs, removed with the value.
  final class Outputs {
    let root: URL
    let job: JobFile

    init() throws {
      root = FileManager.default.temporaryDirectory.appendingPathComponent(
        "sld-dashboard-\(UUID().uuidString)")
      try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
      job = try JobFile.parse(JobReportTests.jobText, path: root.path + "/jobs.yaml", folder: root.path)
    }

    deinit { try? FileManager.default.removeItem(at: root) }

    /// Writes `name`'s metrics (updates 1...`steps`, validation every 10 and at update 0 and
    /// the end, falling from `base` by `gain` per update), its unit line, and for a
    /// finished adapter its PEFT weights and report.
    func train(
      _ name: String, steps: Int, base: Double, gain: Double, unit: UnitPlacement, from: Double, to: Double,
      halvedAt: Int? = nil
    ) throws {
      let folder = root.appendingPathComponent("out/\(name)")
      let output = try AdapterOutput(
        folder: folder, totalSteps: 40, adapterName: name, leader: true, start: .fresh)
      output.validation(step: 0, loss: base, tokens: 100)
      for step in 1...steps {
        output.step(
          StepMetrics(
            step: step, totalSteps: 40, loss: base - gain * Double(step), learningRate: 1e-4, gradientNorm: 1,
            tokens: 120, trainedTokens: 100, seconds: 0.5, tokensPerSecond: 240, epoch: 0.1, etaSeconds: 0))
        if step % 10 == 0 && step != halvedAt {
          output.validation(step: step, loss: base - gain * Double(step), tokens: 100)
        }
        if let rung = halvedAt, step == rung {
          output.record(AdapterOutput.object(halved: rung, loss: base - gain * Double(step), kept: false))
          try Data("{\"step\": \(rung)}".utf8).write(to: folder.appendingPathComponent("retired.json"))
        }
      }
      output.record(
        AdapterOutput.object(
          unit: unit, step: steps, started: Date(timeIntervalSince1970: from),
          ended: Date(timeIntervalSince1970: to),
          stopped: false))
      for file in ["adapter_model.safetensors", "report.html"] {
        try Data("x".utf8).write(to: folder.appendingPathComponent(file))
      }
    }

    /// The whole job: the sweep fused on group 0, devil then fortunes (queued) on group 1.
    func trainAll() throws {
      let members = job.adapters.compactMap { $0.sweep == nil ? nil : $0.name }
      let sweep = UnitPlacement(group: 0, ranks: 0...0, placement: "fused", queued: false, adapters: members)
      for (i, name) in members.enumerated() {
        let halvedAt = JobReportTests.halted.contains(name) ? 20 : nil
        try train(
          name, steps: halvedAt ?? 40, base: 2.5, gain: 0.01 + 0.002 * Double(i), unit: sweep, from: t0,
          to: t0 + 300, halvedAt: halvedAt)
      }
      let devil = UnitPlacement(
        group: 1, ranks: 1...1, placement: "shared", queued: false, adapters: ["devil"])
      try train("devil", steps: 40, base: 3.2, gain: 0.02, unit: devil, from: t0 + 1, to: t0 + 120)
      var fortunes = devil
      (fortunes.adapters, fortunes.queued) = (["fortunes"], true)
      try train("fortunes", steps: 40, base: 4, gain: 0.01, unit: fortunes, from: t0 + 121, to: t0 + 250)
    }

    var t0: Double { JobReportTests.t0 }
  }

  /// The number of times `needle` occurs in `text`.
  func count(_ needle: String, in text: String) -> Int { text.components(separatedBy: needle).count - 1 }

  @Test func theDashboardHoldsEveryAdapterCurveSweepCellAndUnit() throws {
    let outputs = try Outputs()
    try outputs.trainAll()
    let report = JobReport.gather(job: outputs.job, started: Date(timeIntervalSince1970: Self.t0 - 10))
    #expect(report.adapters.map(\.name).count == 6)

    // The table: a row per adapter, losses from update 0 and the last validation.
    let devil = report.adapters.first { $0.name == "devil" }!
    #expect(devil.baseLoss == 3.2 && abs(devil.finalLoss! - 2.4) < 1e-9)
    #expect(devil.trainedTokens == 4000 && devil.steps == 40 && devil.wallSeconds == 119)
    #expect(report.status(devil) == .finished)
    for name in Self.halted {
      let member = report.adapters.first { $0.name == name }!
      #expect(report.status(member) == .halted(step: 20), "\(name)")
      #expect(member.curve.last?.step == 20, "the rung's score is its last point")
    }
    let html = report.html()
    #expect(count("<tr class=\"adapter ", in: html) == 6)
    #expect(count("<tr class=\"adapter halted\"", in: html) == 2)
    #expect(html.contains("stopped by successive halving at step 20"))
    #expect(html.contains("0.8000 (25.0%)"), "devil's improvement: 3.2 → 2.4")
    #expect(html.contains("group 1 (rank 1), shared, queued"))
    #expect(html.contains("<a href=\"devil/report.html\">devil</a>"))
    #expect(!html.contains("<iframe") && !html.contains("<script"))

    // One validation curve per adapter.
    #expect(count("<polyline", in: html) == 6)

    // The sweep grid: rank down, learning rate across, the winner and the halted marked.
    let grid = try #require(report.sweeps.first)
    #expect(report.sweeps.count == 1 && grid.keys == ["rank", "lr"])
    #expect(grid.rows == ["2", "8"] && grid.columns == [["0.0001"], ["0.0003"]])
    #expect(grid.cells.flatMap { $0 }.compactMap { $0?.name }.count == 4)
    #expect(grid.winner == "arith-r8-lr0.0003", "the survivor with the lowest final loss")
    #expect(count("<td class=\"cell", in: html) == 4)
    #expect(count("<td class=\"cell halted\"", in: html) == 2)
    #expect(count("stopped at step 20</small>", in: html) == 2)
    #expect(count("<td class=\"cell winner\" data-adapter=\"arith-r8-lr0.0003\"", in: html) == 1)

    // The timeline: two groups, three units (the fused sweep once, not once per member).
    #expect(report.units.count == 3)
    #expect(count("<g class=\"unit\"", in: html) == 3)
    #expect(count("<g class=\"unit\" data-group=\"1\"", in: html) == 2)
    #expect(html.contains("group 0 (rank 0)") && html.contains("group 1 (rank 1)"))

    let path = try report.write()
    #expect(path == outputs.root.appendingPathComponent("out/report.html").path)
    #expect(try String(contentsOfFile: path, encoding: .utf8) == html)
  }

  @Test func adaptersOfAnEarlierRunAreSkippedAndMissingOnesUnfinished() throws {
    let outputs = try Outputs()
    try outputs.trainAll()
    try FileManager.default.removeItem(at: outputs.root.appendingPathComponent("out/fortunes"))
    // This run started after every unit ended: nothing was trained now.
    let report = JobReport.gather(job: outputs.job, started: Date(timeIntervalSince1970: Self.t0 + 1000))
    let statuses = Dictionary(uniqueKeysWithValues: report.adapters.map { ($0.name, report.status($0)) })
    #expect(statuses["devil"] == .skipped && statuses["arith-r8-lr0.0003"] == .skipped)
    #expect(statuses["arith-r2-lr0.0001"] == .halted(step: 20))
    #expect(statuses["fortunes"] == .unfinished)
    let html = report.html()
    #expect(html.contains("skipped (finished in an earlier run)") && html.contains("not finished"))
    #expect(count("<polyline", in: html) == 5, "fortunes has no curve")
    // No unit of this run: the timeline shows the earlier run's.
    #expect(count("<g class=\"unit\"", in: html) == 2)
  }

  @Test func aRelativeLinkClimbsOutOfTheJobFolder() throws {
    let outputs = try Outputs()
    try outputs.trainAll()
    var report = JobReport.gather(job: outputs.job)
    report.folder = outputs.root.appendingPathComponent("elsewhere/dash")
    #expect(report.reportLink(report.adapters[0]) == "../../out/devil/report.html")
  }
}
