import Foundation
import LoRACoordinator
import LoRAKernels
import LoRARun
import LoRATraining
import Testing

@testable import swift_lora_dist

/// `train` and `eval` through the built binary: a short real run, and bad input that must
/// fail clearly and leave no adapter behind.
@Suite(.serialized) struct TrainCommandTests {
  static let model = ModelCommandTests.defaultModel
  static var modelAvailable: Bool { FileManager.default.fileExists(atPath: model) }

  final class Folder {
    let path: String
    init() throws {
      path = NSTemporaryDirectory() + "train-cli-" + UUID().uuidString
      try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
    func write(_ name: String, _ text: String) throws -> String {
      try text.write(toFile: path + "/" + name, atomically: true, encoding: .utf8)
      return path + "/" + name
    }
    func exists(_ name: String) -> Bool { FileManager.default.fileExists(atPath: path + "/" + name) }
  }

  static let arithmetic =
    (1...8).map { #"{"prompt": "What is \#($0) plus \#($0)?", "completion": " \#(2 * $0)"}"# }
    .joined(separator: "\n") + "\n"

  /// `--attention-precision` reaches the model: over a bf16 base, auto scores as bf16 does
  /// (bit for bit), and f32 within bf16 rounding of it but not equal.
  @Test(.enabled(if: modelAvailable && Attention.bf16Available, "needs the default model and bf16 products"))
  func attentionPrecisionReachesTheModel() throws {
    let folder = try Folder()
    let data = try folder.write("valid.jsonl", Self.arithmetic)
    let losses = try ["auto", "bf16", "f32"].map { precision in
      let eval = try CommandRunner.run([
        "eval", "--model", Self.model, "--data", data, "--base-precision", "bf16", "--attention-precision",
        precision, "--json",
      ])
      #expect(eval.status == 0, "\(eval.errors)")
      return try JSONDecoder().decode(EvalResult.self, from: Data(eval.output.utf8)).loss
    }
    #expect(losses[0] == losses[1])
    #expect(losses[2] != losses[1] && abs(losses[2] - losses[1]) <= 1e-2 * losses[2], "\(losses)")
  }

  @Test(.enabled(if: modelAvailable, "the default model is not in the cache"))
  func shortRunWritesAdapterMetricsAndReportDeterministically() throws {
    let folder = try Folder()
    let data = try folder.write("train.jsonl", Self.arithmetic)
    func train(_ output: String) throws -> CommandRunner.Outcome {
      try CommandRunner.run([
        "train", "--model", Self.model, "--data", data, "--output", folder.path + "/" + output, "--steps",
        "2",
        "--batch-size", "2", "--micro-batch", "1", "--max-seq-len", "32", "--validation-fraction", "0.25",
        "--lr", "1e-3", "--seed", "7", "--json",
      ])
    }
    let outcome = try train("run")
    #expect(outcome.status == 0, "\(outcome.errors)")
    for file in [
      "adapter_config.json", "adapter_model.safetensors", "metrics.jsonl", "report.html",
      "training_config.json",
    ] {
      #expect(folder.exists("run/" + file), "missing \(file)")
    }
    let metrics = try String(contentsOfFile: folder.path + "/run/metrics.jsonl", encoding: .utf8)
    #expect(metrics.split(separator: "\n").filter { $0.contains("\"event\":\"step\"") }.count == 2)
    #expect(metrics.contains("\"event\":\"validation\""))
    let report = try String(contentsOfFile: folder.path + "/run/report.html", encoding: .utf8)
    #expect(report.contains("<svg") && report.contains("validation loss"))
    #expect(outcome.output.contains("\"event\":\"finished\""))

    // The same seed gives the same adapter, byte for byte.
    #expect(try train("again").status == 0)
    let first = try Data(contentsOf: URL(fileURLWithPath: folder.path + "/run/adapter_model.safetensors"))
    let second = try Data(contentsOf: URL(fileURLWithPath: folder.path + "/again/adapter_model.safetensors"))
    #expect(first == second)

    // The adapter loads back for evaluation.
    let eval = try CommandRunner.run([
      "eval", "--model", Self.model, "--adapter", folder.path + "/run", "--data", data, "--max-seq-len", "32",
      "--json",
    ])
    #expect(eval.status == 0, "\(eval.errors)")
    let result = try JSONDecoder().decode(EvalResult.self, from: Data(eval.output.utf8))
    #expect(result.examples == 8 && result.loss.isFinite && result.tokens > 0)

    // generate applies it too.
    let generated = try CommandRunner.run([
      "generate", "--model", Self.model, "--adapter", folder.path + "/run", "--prompt", "What is 3 plus 3?",
      "--max-tokens", "3", "--json",
    ])
    #expect(generated.status == 0, "\(generated.errors)")
    #expect(try JSONDecoder().decode(GenerateResult.self, from: Data(generated.output.utf8)).ids.count >= 1)

    // A second run into the same folder is refused.
    let again = try train("run")
    #expect(
      again.status != 0
        && again.errors.contains("already holds a run; choose another --output or pass --overwrite"))
  }

  @Test(.enabled(if: modelAvailable, "the default model is not in the cache"))
  func malformedLineNamesFileAndLineAndWritesNoAdapter() throws {
    let folder = try Folder()
    let data = try folder.write("train.jsonl", Self.arithmetic + "{\"prompt\": \"broken\", \n")
    let outcome = try CommandRunner.run([
      "train", "--model", Self.model, "--data", data, "--output", folder.path + "/out", "--steps", "1",
    ])
    #expect(outcome.status != 0)
    #expect(outcome.errors.contains("\(data):9: invalid JSON"), "\(outcome.errors)")
    #expect(!folder.exists("out/adapter_model.safetensors"))
  }

  @Test func badOptionsFailBeforeLoadingAnything() throws {
    let folder = try Folder()
    let cases: [([String], String)] = [
      (["--lr=-1"], "learning rate must be a positive number, got -1.0"),
      (["--targets", "c_attn"], "target module 'c_attn' is not a linear layer"),
      (["--batch-size", "6", "--micro-batch", "4"], "batch size 6 must be a multiple of micro-batch 4"),
      (["--schedule", "exponential"], "schedule 'exponential' is not one of constant, linear, cosine"),
      (["--max-seq-len", "1"], "max"),
      (["--rank", "0"], "rank must be at least 1, got 0"),
      (["--dropout", "nan"], "lora_dropout must be in [0, 1), got nan"),
      (
        ["--prefix-tokens", "4", "--padding-free"],
        "--padding-free: applies to adapters without prompt or prefix tokens"
      ),
    ]
    for (flags, message) in cases {
      let outcome = try CommandRunner.run(
        ["train", "--model", "/nonexistent.gguf", "--data", "d.jsonl", "--output", folder.path + "/o"] + flags
      )
      #expect(outcome.status != 0, "\(flags) was accepted")
      #expect(outcome.errors.contains(message), "\(flags): \(outcome.errors)")
    }
  }

  @Test func unknownConfigKeyNamesFileAndLine() throws {
    let folder = try Folder()
    let config = try folder.write("run.yaml", "model: m.gguf\ndata: d.jsonl\nlearning_rate: 0.1\n")
    let outcome = try CommandRunner.run(["train", "--config", config, "--output", folder.path + "/o"])
    #expect(outcome.status != 0)
    #expect(
      outcome.errors.contains("\(config):3: learning_rate: unknown key; the keys are the train flags"),
      "\(outcome.errors)")
  }

  @Test func configFileFillsTheTrainingSettingsAndTrainsOwnKeys() throws {
    let folder = try Folder()
    let config = try folder.write(
      "run.yaml",
      """
      model: m.gguf
      data: d.jsonl
      rank: 4
      targets: [q_proj, k_proj]
      batch_size: 16
      threads: 2
      checkpoint_activations: true
      resume: auto
      attention_precision: f32
      """)
    let file = try TrainConfiguration.load(yamlFile: config)
    #expect(file.model == "m.gguf" && file.data == "d.jsonl" && file.rank == 4 && file.batchSize == 16)
    #expect(file.attentionPrecision == .f32)
    #expect(file.targets == ["q_proj", "k_proj"] && file.threads == 2)
    #expect(file.checkpointActivations == true && file.resume == "auto" && file.lr == nil)
    var flags = TrainConfiguration()
    flags.rank = 8
    flags.threads = 1
    let merged = try file.overridden(by: flags)
    #expect(merged.rank == 8 && merged.threads == 1 && merged.batchSize == 16 && merged.model == "m.gguf")
    // Types and ranges are checked as in job files, with the line and key.
    for (text, message) in [
      ("model: m.gguf\nrank: many\n", ":2: rank: expected a rank (a whole number) or auto, got 'many'"),
      ("model: m.gguf\ndata: d.jsonl\nrank: 0\n", ":3: rank: LoRA rank must be at least 1, got 0"),
      ("threads: [1]\n", ":1: threads: expected an integer, got a list"),
      ("dropout: 1.5\n", ":1: dropout: must be in [0, 1), got 1.5"),
      ("- rank\n- 4\n", ": expected a mapping of option: value"),
    ] {
      let bad = try folder.write("bad.yaml", text)
      #expect {
        try TrainConfiguration.load(yamlFile: bad)
      } throws: { error in
        "\(error)" == bad + message
      }
    }
    let precision = try folder.write("precision.yaml", "model: m.gguf\nattention_precision: fp16\n")
    #expect {
      try TrainConfiguration.load(yamlFile: precision)
    } throws: { error in
      "\(error)".hasPrefix(precision + ":2: attention_precision") && "\(error)".contains("fp16")
    }
  }

  @Test func aJobAdapterTrainsWithItsSettingsTheJobsModelAndResumeAuto() throws {
    let folder = try Folder()
    _ = try folder.write("m.gguf", "")
    _ = try folder.write("d.jsonl", "{\"text\": \"a\"}\n")
    let jobs = try folder.write(
      "jobs.yaml",
      """
      model: m.gguf
      output: out
      defaults: { rank: 4, lr: 0.001 }
      adapters:
        - { name: a, data: d.jsonl, batch_size: 2, micro_batch: 1 }
      """)
    let job = try JobFile.load(path: jobs)
    let plan = try JobRunner(job: job, stop: StopRequest(), emit: { _ in }).plan(for: job.adapters[0])
    #expect(plan.lora == job.adapters[0].settings.training.loraConfig)
    #expect(plan.model == job.model && plan.resume == "auto")
    #expect(
      plan.lora.r == 4 && plan.options.learningRate == 0.001 && plan.options.batchSize == 2
        && plan.output.path == job.adapters[0].output)
    #expect(plan.name == "a" && !plan.force && plan.options.checkpointActivations == false)
  }

  @Test func missingRequiredSettingsAreNamed() throws {
    let outcome = try CommandRunner.run(["train", "--data", "d.jsonl", "--output", "o"])
    #expect(
      outcome.status != 0 && outcome.errors.contains("no base model: pass --model or set 'model' in --config")
    )
  }
}
