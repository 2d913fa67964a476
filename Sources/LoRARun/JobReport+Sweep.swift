import Foundation
import LoRACoordinator

/// A sweep's grid on the dashboard: the first swept key's values down (rank, usually), the
/// other keys' value combinations across (learning rate, usually), and in each cell the
/// member with those values.
extension JobReport {
  public struct SweepGrid {
    /// The sweep's name (the job entry that holds it).
    public var name: String
    /// The swept keys, in the sweep's order.
    public var keys: [String]
    /// The first key's values, in order of expansion.
    public var rows: [String]
    /// The other keys' values of each column (`["0.0001"]`; `[]` for a one-key sweep).
    public var columns: [[String]]
    /// `cells[row][column]`: the member there, if any.
    public var cells: [[Adapter?]]
    /// The member with the lowest final validation loss among those not halted (among all
    /// when every member was halted).
    public var winner: String?
  }

  /// One grid per sweep of the job, in file order.
  public var sweeps: [SweepGrid] {
    var names: [String] = []
    for adapter in adapters {
      if let sweep = adapter.sweep?.sweep, !names.contains(sweep) { names.append(sweep) }
    }
    return names.map { name in
      let members = adapters.filter { $0.sweep?.sweep == name }.sorted { $0.sweep!.index < $1.sweep!.index }
      return Self.grid(name, members: members)
    }
  }

  /// The grid of sweep `name` over `members` (in expansion order).
  static func grid(_ name: String, members: [Adapter]) -> SweepGrid {
    let keys = members.first?.sweep?.values.map { $0.first ?? "" } ?? []
    var rows: [String] = []
    var columns: [[String]] = []
    for member in members {
      let values = member.sweep!.values.map { $0.count > 1 ? $0[1] : "" }
      if let row = values.first, !rows.contains(row) { rows.append(row) }
      if !columns.contains(Array(values.dropFirst())) { columns.append(Array(values.dropFirst())) }
    }
    var cells = [[Adapter?]](repeating: [Adapter?](repeating: nil, count: columns.count), count: rows.count)
    for member in members {
      let values = member.sweep!.values.map { $0.count > 1 ? $0[1] : "" }
      guard let row = rows.firstIndex(of: values.first ?? ""),
        let column = columns.firstIndex(of: Array(values.dropFirst()))
      else { continue }
      cells[row][column] = member
    }
    let scored = members.filter { $0.finalLoss?.isFinite == true }
    let survivors = scored.filter { $0.haltedAt == nil }
    let winner = (survivors.isEmpty ? scored : survivors).min { $0.finalLoss! < $1.finalLoss! }
    return SweepGrid(name: name, keys: keys, rows: rows, columns: columns, cells: cells, winner: winner?.name)
  }
}
