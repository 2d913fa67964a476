import Foundation
import LoRACoordinator
import LoRARun
import Testing

@testable import swift_lora_dist

/// `train --rank auto`: the ladder climbed while validation improves, each rung starting from
/// the previous one grown with its output unchanged, the decisions recorded, and bad input.
@Suite(.serialized) struct RankAutoTests {
  static let model = ModelCommandTests.defaultModel
  static var modelAvailable: Bool { FileManager.default.fileExists(atPath: model) }

  @Test func decisionsFollowTheTolerance() {
    #expect(RankSearch.decide(previous: nil, loss: 3, tolerance: 0.01, last: false) == "grow")
    #expect(RankSearch.decide(previous: nil, loss: 3, tolerance: 0.01, last: true) == "top")
    #expect(RankSearch.decide(previous: 3, loss: 2.9, tolerance: 0.01, last: false) == "grow")
    #expect(RankSearch.decide(previous: 3, loss: 2.98, tolerance: 0.01, last: false) == "stop")
    #expect(RankSearch.decide(previous: 3, loss: 3.1, tolerance: 0, last: true) == "stop")
    #expect(RankSearch.decide(previous: 3, loss: 2.9, tolerance: 0.01, last: true) == "top")
    let rung = { (rank: Int, decision: String) in
      RankSearch.Rung(
        rank: rank, alpha: 1, validationLoss: 1, improvement: nil, decision: decision, updates: 1,
        trainableParameters: 1)
    }
    #expect(RankSearch.chosen([rung(2, "grow"), rung(4, "stop")])?.rank == 2)
    #expect(RankSearch.chosen([rung(2, "grow"), rung(4, "top")])?.rank == 4)
  }

  @Test(.enabled(if: modelAvailable, "the default model is not in the cache"))
  func climbsRecordsAndKeepsTheChosenRung() throws {
    let folder = try TrainCommandTests.Folder()
    let data = try folder.write("train.jsonl", TrainCommandTests.arithmetic)
    let out = folder.path + "/auto"
    let arguments = [
      "train", "--model", Self.model, "--data", data, "--validation-data", data, "--output", out, "--steps",
      "3",
      "--batch-size", "2", "--micro-batch", "1", "--max-seq-len", "32", "--lr", "3e-3", "--rank", "auto",
      "--rank-ladder", "1,2", "--rank-tolerance", "0", "--seed", "3", "--json", "--base-precision", "f32",
    ]
    let outcome = try CommandRunner.run(arguments)
    #expect(outcome.status == 0, "\(outcome.errors)")
    let document = try JSONDecoder().decode(
      RankSearchDocument.self, from: Data(contentsOf: URL(fileURLWithPath: out + "/rank-search.json")))
    #expect(
      document.ladder == [1, 2] && document.rungs.first?.rank == 1 && document.rungs.first?.decision == "grow"
    )
    #expect(document.rungs.count == 2 && document.updatesTrained == 6)
    #expect(document.rungs[1].alpha == 2 * document.rungs[0].alpha, "the scale is kept as the rank grows")
    let kept = try #require(RankSearch.chosen(document.rungs))
    #expect(document.chosenRank == kept.rank)
    let config = try #require(
      try JSONSerialization.jsonObject(
        with: Data(contentsOf: URL(fileURLWithPath: out + "/adapter_config.json")))
        as? [String: Any])
    #expect(config["r"] as? Int == kept.rank)
    // The second rung starts where the first ended: growing leaves the output unchanged.
    func validations(_ rung: Int) throws -> [Double] {
      try String(contentsOfFile: out + "/rank-\(rung)/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        .filter { $0["event"] as? String == "validation" }.compactMap { $0["loss"] as? Double }
    }
    let (first, second) = (try validations(1), try validations(2))
    #expect(abs(try #require(second.first) - (try #require(first.last))) <= 1e-5 * first.last!)
    let metrics = try String(contentsOfFile: out + "/metrics.jsonl", encoding: .utf8)
    #expect(metrics.split(separator: "\n").count == 2 && metrics.contains("\"event\":\"rank_rung\""))
    let report = try String(contentsOfFile: out + "/report.html", encoding: .utf8)
    #expect(report.contains("<svg") && report.contains("★ kept"))

    // Resumed after it finished: each rung is restored from its checkpoints, not retrained,
    // and the search decides the same.
    let adapter = try Data(contentsOf: URL(fileURLWithPath: out + "/adapter_model.safetensors"))
    let again = try CommandRunner.run(arguments + ["--resume", "auto"])
    #expect(again.status == 0, "\(again.errors)")
    #expect(try Data(contentsOf: URL(fileURLWithPath: out + "/adapter_model.safetensors")) == adapter)
    #expect(
      try JSONDecoder().decode(
        RankSearchDocument.self, from: Data(contentsOf: URL(fileURLWithPath: out + "/rank-search.json")))
        == document)
    #expect(try validations(1) == first, "the finished rung trained again")
  }

  @Test func badRequestsAreNamedBeforeLoading() throws {
    let folder = try TrainCommandTests.Folder()
    let data = try folder.write("train.jsonl", TrainCommandTests.arithmetic)
    let base = ["train", "--model", Self.model, "--data", data, "--output", folder.path + "/x"]
    let noValidation = try CommandRunner.run(base + ["--rank", "auto"])
    #expect(
      noValidation.status != 0 && noValidation.errors.contains("decides by the validation loss"),
      "\(noValidation.errors)")
    let both = try CommandRunner.run(
      base + ["--rank", "4", "--rank-ladder", "2,4", "--validation-data", data])
    #expect(both.status != 0 && both.errors.contains("give either rank or rank_ladder"), "\(both.errors)")
    let ladder = try CommandRunner.run(
      base + ["--rank", "auto", "--rank-ladder", "4,2", "--validation-data", data])
    #expect(
      ladder.status != 0 && ladder.errors.contains("expected at least two increasing ranks"),
      "\(ladder.errors)")
    let word = try CommandRunner.run(base + ["--rank", "many"])
    #expect(word.status != 0)
    // The same in a --config file: `rank: auto` is a literal there.
    let auto = try folder.write("auto.yaml", "rank: auto\nrank_ladder: [2, 4]\n")
    let fromFile = try CommandRunner.run(base + ["--config", auto])
    #expect(
      fromFile.status != 0 && fromFile.errors.contains("decides by the validation loss"), "\(fromFile.errors)"
    )
    let typo = try folder.write("typo.yaml", "steps: 3\nrank: autom\n")
    let wrong = try CommandRunner.run(base + ["--config", typo])
    #expect(
      wrong.status != 0 && wrong.errors.contains("typo.yaml:2") && wrong.errors.contains("or auto"),
      "\(wrong.errors)")
    // A flag's number replaces the file's ladder, and --rank-ladder the file's number.
    var (file, flags) = (TrainConfiguration(), TrainConfiguration())
    (file.training.rankLadder, flags.training.rank) = ([2, 4], 4)
    let number = try file.overridden(by: flags).training
    #expect(number.rank == 4 && number.rankLadder == nil && number.ladder == nil)
    let ladderOverNumber = try flags.overridden(by: file).training
    #expect(ladderOverNumber.rank == nil && ladderOverNumber.ladder == [2, 4])
    let resumeElsewhere = try CommandRunner.run(
      base + ["--rank", "auto", "--validation-data", data, "--resume", folder.path + "/other"])
    #expect(
      resumeElsewhere.status != 0 && resumeElsewhere.errors.contains("resumes from its own output folder"),
      "\(resumeElsewhere.errors)")
    #expect(!FileManager.default.fileExists(atPath: folder.path + "/x"))
  }
}
