import Foundation
import LoRACoordinator

/// The job's combined report: one page with every finished adapter's report.
enum JobReport {
  /// Writes `report.html` in the job's output folder (else beside the first adapter's
  /// folder); its path, or nil when no adapter finished.
  static func write(job: JobFile, adapters: [AdapterJob]) throws -> String? {
    guard let first = adapters.first else { return nil }
    let folder = URL(
      fileURLWithPath: job.output ?? URL(fileURLWithPath: first.output).deletingLastPathComponent().path)
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    let frames = adapters.map { adapter -> String in
      let relative = URL(fileURLWithPath: adapter.output).appendingPathComponent("report.html").path
      return
        "<section><h2>\(adapter.name)</h2><iframe src=\"file://\(relative)\" loading=\"lazy\"></iframe></section>"
    }.joined(separator: "\n")
    let html = """
      <!doctype html><html lang="en"><head><meta charset="utf-8"><title>Job \(job.path)</title>
      <style>body { font: 15px/1.45 system-ui, sans-serif; margin: 1.5em; }
      main { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 1em; }
      iframe { width: 100%; height: 900px; border: 1px solid #ddd; }</style></head><body>
      <h1>Job \(job.path)</h1><main>
      \(frames)
      </main></body></html>
      """
    let url = folder.appendingPathComponent("report.html")
    try Data(html.utf8).write(to: url, options: .atomic)
    return url.path
  }
}
