/// Where one unit of a job trains — its rank group, that group's world ranks, its placement,
/// whether the group took it from the queue — and its adapters. Written, with the unit's
/// start and end, as each adapter's `unit` metrics line (`AdapterOutput.object(unit:…)`),
/// which the job's dashboard (`JobReport`) reads for its timeline.
public struct UnitPlacement: Sendable, Equatable {
  /// The rank group's index (its split colour).
  public var group: Int
  /// The group's world ranks.
  public var ranks: ClosedRange<Int>
  /// `fused`, `shared` or `separate`.
  public var placement: String
  /// Whether the group claimed the unit from the queue at run time.
  public var queued: Bool
  /// The unit's adapters, in training order.
  public var adapters: [String]

  public init(group: Int, ranks: ClosedRange<Int>, placement: String, queued: Bool, adapters: [String]) {
    self.group = group
    self.ranks = ranks
    self.placement = placement
    self.queued = queued
    self.adapters = adapters
  }
}
