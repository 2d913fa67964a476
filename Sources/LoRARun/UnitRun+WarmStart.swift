import Foundation
import LoRACheckpoint
import LoRAModel
import LoRATraining

extension UnitRun {
  /// Starts each adapter that does not resume from its plan's `initAdapter` (any form
  /// `--adapter` takes): its A and B are copied in, the optimizer starts afresh. Every rank
  /// reads the same file, so all start equal.
  /// - Throws: `RunError` naming the module when the adapter adapts other modules, or at
  ///   another rank or scale, than the plan's configuration.
  func warmStart(_ group: FusedTrainer) throws {
    // Decided by `resumeSource`, as `resume` does on every rank (what each resumed from
    // is known on rank 0 alone).
    for (k, plan) in plans.enumerated() where plan.resumeSource == nil {
      let source: LoRAAdapter
      let path: String
      if initialAdapters.indices.contains(k), let given = initialAdapters[k] {
        (source, path) = (given, "(the previous rung's adapter)")
      } else if let file = plan.initAdapter {
        source = try AdapterFile.load(file, model: loaded.model, files: loaded.files, force: plan.force)
          .adapter
        path = file
      } else {
        continue
      }
      let target = group.trainers[k].adapter
      let names = Set(source.modules.map(\.name))
      for extra in names.subtracting(target.modules.map(\.name)).sorted() {
        throw RunError("init_adapter \(path) adapts \(extra), which this configuration does not")
      }
      for module in target.modules {
        guard let from = source.module(layer: module.layer, target: module.target) else {
          throw RunError("init_adapter \(path) does not adapt \(module.name), which this configuration does")
        }
        guard from.rank == module.rank, from.scale == module.scale else {
          throw RunError(
            "init_adapter \(path): \(module.name) has rank \(from.rank) and alpha \(from.alpha) "
              + "(scale \(from.scale)) where this configuration has rank \(module.rank) and alpha \(module.alpha) "
              + "(scale \(module.scale)); set rank and alpha to the adapter's")
        }
        module.a.copy(from: from.a)
        module.b.copy(from: from.b)
        if let magnitude = module.magnitude, let given = from.magnitude { magnitude.copy(from: given) }
      }
      if source.norms != nil && target.norms == nil {
        throw RunError(
          "init_adapter \(path) is a DoRA adapter and this configuration is not: set use_dora to keep its magnitudes"
        )
      }
      // Plain LoRA into DoRA: magnitudes that make the start equal the given adapter.
      if source.norms == nil { loaded.model.resetMagnitudes(of: target) }
      // Virtual tokens come along when the configuration has the same ones; without any of
      // its own the source's would be lost, and other ones do not fit.
      if let from = source.virtualTokens {
        guard let to = target.virtualTokens, to.config.kind == from.config.kind, to.count == from.count,
          to.embedding.shape == from.embedding.shape
        else {
          throw RunError(
            "init_adapter \(path) has \(from.config.summary), which this configuration "
              + (target.virtualTokens.map { "replaces with \($0.config.summary)" } ?? "does not train")
              + "; set the same prompt_tokens or prefix_tokens (and prefix_projection)")
        }
        target.parameters.view(offset: to.offset, shape: [to.count]).copy(
          from: source.parameters.view(offset: from.offset, shape: [from.count]))
      }
    }
  }
}
