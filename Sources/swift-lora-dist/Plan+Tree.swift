import Foundation
import LoRACoordinator
import LoRAModel
import LoRARun

extension Plan {
  /// A tree's plan: each level's table (its times from the job's start, after the levels
  /// before it), then the tree drawn with each node's level, rank group and estimate.
  static func render(tree levels: [LoRACoordinator.Plan], job: JobFile, config: LlamaConfig) -> String {
    var lines = [
      "plan for \(job.path): \(job.adapters.count) adapter(s) in a tree of \(levels.count) levels on "
        + "\(levels[0].ranks) rank(s), level by level (a child starts once its parent's adapter exists)",
      header(levels[0], job: job, config: config),
    ]
    var offset = 0.0
    var placed: [String: (level: Int, plan: AdapterPlan)] = [:]
    for (index, level) in levels.enumerated() {
      var shifted = level
      for k in shifted.adapters.indices {
        shifted.adapters[k].start += offset
        shifted.adapters[k].end += offset
        placed[shifted.adapters[k].name] = (index, shifted.adapters[k])
      }
      lines += ["", "level \(index) (\(level.adapters.count) adapter(s), from \(duration(offset))):"]
      lines += table(shifted)
      offset += level.estimatedSeconds
    }
    lines += ["", "tree:"]
    var rows: [[String]] = []
    func draw(_ adapter: AdapterJob, prefix: String, last: Bool, root: Bool) {
      guard let (level, plan) = placed[adapter.name] else { return }
      rows.append([
        root ? adapter.name : prefix + (last ? "└─ " : "├─ ") + adapter.name, "level \(level)",
        "group \(plan.group)", "\(plan.plannedSteps) steps", "\(duration(plan.start))–\(duration(plan.end))",
      ])
      let children = job.adapters.filter { $0.parent == adapter.name }
      for (i, child) in children.enumerated() {
        draw(
          child, prefix: root ? "" : prefix + (last ? "   " : "│  "), last: i == children.count - 1,
          root: false)
      }
    }
    for root in job.adapters where root.parent == nil { draw(root, prefix: "", last: true, root: true) }
    lines += renderTable([["adapter", "level", "group", "steps", "estimate"]] + rows, rightAligned: [3])
    lines.append("estimated total time: \(duration(offset))")
    return lines.joined(separator: "\n")
  }
}
