import Foundation
import LoRAYAML

/// Trees of adapters: an adapter with `parent: NAME` trains over its ancestors' ΔW, frozen
/// and unmerged. The job runs level by level (roots first, then their children, …): a
/// child starts once its parent's final adapter exists. Siblings may be fused (a sweep under
/// one parent, or a `group`), and the adapters of one level are placed on rank groups as a
/// job of their own.
extension JobFile {
  /// The adapter named `name`.
  public func adapter(named name: String) -> AdapterJob? { adapters.first { $0.name == name } }

  /// `adapter`'s ancestors, root first (empty for a root).
  public func ancestors(of adapter: AdapterJob) -> [AdapterJob] {
    var chain: [AdapterJob] = []
    var current = adapter
    while let name = current.parent, let parent = self.adapter(named: name), chain.count < adapters.count {
      chain.insert(parent, at: 0)
      current = parent
    }
    return chain
  }

  /// The adapters by depth in the tree (roots first), each level in file order.
  public var levels: [[AdapterJob]] {
    var levels: [[AdapterJob]] = []
    for adapter in adapters {
      let depth = ancestors(of: adapter).count
      while levels.count <= depth { levels.append([]) }
      levels[depth].append(adapter)
    }
    return levels.filter { !$0.isEmpty }
  }

  /// Every parent names another adapter of the job, the parents form no cycle, and a fused
  /// group lies within one level.
  func checkTree() throws {
    let names = Set(adapters.map(\.name))
    for adapter in adapters {
      guard let parent = adapter.parent else { continue }
      let origin = adapter.origin(of: "parent")
      if parent == adapter.name {
        throw origin.error(.invalidValue, "'\(adapter.name)' names itself as its parent")
      }
      guard names.contains(parent) else {
        let members = adapters.filter { $0.sweep?.sweep == parent }.map(\.name)
        throw origin.error(
          .invalidValue,
          members.isEmpty
            ? "no adapter '\(parent)' in this job; a parent is one of: \(adapters.map(\.name).joined(separator: ", "))"
            : "'\(parent)' is a sweep; a parent is one adapter: one of its members (\(members.joined(separator: ", ")))"
        )
      }
      if let parentJob = self.adapter(named: parent), let virtual = parentJob.settings.virtualTokens {
        throw origin.error(
          .invalidValue,
          "'\(parent)' has \(virtual.summary), which does not flatten into ΔW: a parent must be LoRA alone "
            + "(its children may have virtual tokens of their own)")
      }
      // Walk up: a cycle comes back to this adapter.
      var seen = [adapter.name]
      var current = parent
      while let next = self.adapter(named: current) {
        seen.append(current)
        if current == adapter.name {
          throw origin.error(.conflict, "the parents form a cycle: \(seen.joined(separator: " → "))")
        }
        guard let up = next.parent, seen.count <= adapters.count else { break }
        current = up
      }
    }
    // An explicit `group` (an implicit one, of adapters placed `fused`, is formed per level).
    for (name, members) in groups where members.allSatisfy({ $0.origins["group"] != nil }) {
      let depth = ancestors(of: members[0]).count
      if let late = members.first(where: { ancestors(of: $0).count != depth }) {
        throw late.origin(of: "group").error(
          .conflict,
          "group '\(name)' mixes levels of the tree ('\(members[0].name)' and '\(late.name)'): "
            + "fused adapters train together, so they need the same depth")
      }
    }
  }
}
