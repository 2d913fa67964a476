import ArgumentParser
import Foundation
import LoRACoordinator
import LoRARun

/// `swift-lora-dist report`: a job's dashboard, written again from its adapters' outputs.
struct Report: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Write a job's dashboard (<output>/report.html) from its adapters' outputs.",
    discussion: """
      `train --jobs` writes the dashboard when every rank group is done; this command writes \
      it from what the output folders hold now: after a stopped run, while one runs, or for \
      a finished one. It reads each adapter's metrics.jsonl, retired.json and report.html \
      and loads no model. The page: every adapter's losses, tokens, time and rank group; \
      their validation curves; a grid per sweep; the rank groups' timeline \
      (docs/job-file.md).

      Examples:
        swift-lora-dist report --jobs jobs.yaml
        swift-lora-dist report --jobs examples/jobs/demo.yaml
      """)

  @Option(help: "The job file (YAML; docs/job-file.md).") var jobs: String

  func run() throws {
    let job = try JobFile.load(path: jobs)
    print("combined report: \(try JobReport.gather(job: job).write())")
  }
}
