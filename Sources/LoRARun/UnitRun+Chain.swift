import Foundation
import LoRACheckpoint
import LoRAModel
import LoRATraining

extension UnitRun {
  /// Lays each tree node's ancestors (its plan's `chain`), flattened into one adapter, frozen
  /// under its adapter, and records them in its `chain.json`. A node that resumes is refused
  /// when an ancestor changed since it started (the fingerprints differ).
  func attachChains(_ group: FusedTrainer) throws {
    for (k, plan) in plans.enumerated() where !plan.chain.isEmpty {
      let node = plan.name ?? plan.output.lastPathComponent
      if plan.lora.pissa != nil {
        throw RunError(
          "\(node): init_weights \(plan.lora.initialization) on a tree node is not supported (PiSSA starts "
            + "from the base's own singular vectors, not from its ancestors'); train tree nodes with default init"
        )
      }
      if plan.lora.useDora {
        throw RunError(
          "\(node): use_dora on a tree node is not supported (its ancestors' ΔW sits between W0 and its norm); "
            + "train tree nodes as plain LoRA")
      }
      let now = try AdapterChainRecord.reading(plan.chain, node: node)
      let file = plan.output.appendingPathComponent(AdapterChainRecord.fileName)
      if plan.resumeSource != nil, let data = FileManager.default.contents(atPath: file.path) {
        try JSONDecoder().decode(AdapterChainRecord.self, from: data).check(now, node: node)
      }
      group.trainers[k].frozen = try AdapterChain.flatten(
        now.loadAncestors(model: loaded.model.config), model: loaded.model.config)
      if leader {
        try FileManager.default.createDirectory(at: plan.output, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(now).write(to: file, options: .atomic)
      }
    }
  }
}
