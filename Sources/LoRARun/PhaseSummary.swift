import LoRAKernels

/// How a rank's time per update reads in reports and on the terminal.
extension PhaseTimes {
  /// "0.512 s: frozen products 0.201 s (39.3%), …, waiting 0.004 s (0.8%), all-reduce …",
  /// phases of zero time left out; seconds as given (the caller divides by updates).
  public var line: String {
    let total = self.total
    let parts = Phase.allCases.filter { self[$0] > 0 }.map {
      "\($0.title) \(format(self[$0], 4)) s (\(format(100 * self[$0] / max(total, 1e-12), 1))%)"
    }
    return "\(format(total, 4)) s: " + parts.joined(separator: ", ")
  }

  /// The share of `total` spent waiting for slower ranks.
  public var waitingFraction: Double { self[.waiting] / max(total, 1e-12) }

  /// The JSON object of one rank's phases per update: seconds by phase key, with the total.
  public func object(rank: Int) -> [String: Any] {
    var object: [String: Any] = ["rank": rank, "total": total]
    for (key, value) in fields { object[key] = value }
    return object
  }
}
