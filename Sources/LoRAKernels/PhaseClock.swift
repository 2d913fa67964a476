import Dispatch

/// The parts a training step's time is divided into on one rank.
public enum Phase: Int, CaseIterable, Sendable {
  /// The base's frozen linear products (forward and input gradients).
  case frozen
  /// The output head's products (logits and their input gradient).
  case head
  /// Softmax and cross-entropy over the logits (the head's products apart).
  case loss
  /// The adapters' own products: LoRA's A and B, DoRA's norms and rescaling, prefix tables.
  case lora
  /// Scaled dot-product attention, forward and backward.
  case attention
  /// Everything else inside the step: norms, RoPE, SwiGLU, residual copies, dropout,
  /// embedding, batch layout.
  case elementwise
  /// Gradient clipping and the AdamW step.
  case optimizer
  /// Waiting for the slowest rank before the gradient all-reduce (load imbalance).
  case waiting
  /// The all-reduces themselves (gradients, token counts, losses).
  case allreduce

  /// The key in JSON.
  public var key: String {
    switch self {
    case .frozen: "frozen"
    case .head: "head"
    case .loss: "loss"
    case .lora: "lora"
    case .attention: "attention"
    case .elementwise: "elementwise"
    case .optimizer: "optimizer"
    case .waiting: "waiting"
    case .allreduce: "allreduce"
    }
  }

  /// A short name for tables.
  public var title: String {
    switch self {
    case .frozen: "frozen products"
    case .head: "output head"
    case .loss: "loss"
    case .lora: "LoRA products"
    case .attention: "attention"
    case .elementwise: "element-wise"
    case .optimizer: "optimizer"
    case .waiting: "waiting"
    case .allreduce: "all-reduce"
    }
  }

  /// Whether the phase is this rank's own work (not waiting for or talking to other ranks).
  public var isCompute: Bool { self != .waiting && self != .allreduce }
}

/// Seconds per phase (`Phase`), one rank's.
public struct PhaseTimes: Sendable, Equatable, Codable {
  /// Seconds by `Phase.rawValue`.
  public private(set) var seconds: [Double]

  public init() { seconds = Array(repeating: 0, count: Phase.allCases.count) }

  /// From seconds in `Phase` order (missing ones 0).
  public init(seconds values: [Double]) {
    self.init()
    for (i, value) in values.prefix(seconds.count).enumerated() { seconds[i] = value }
  }

  public subscript(_ phase: Phase) -> Double {
    get { seconds[phase.rawValue] }
    set { seconds[phase.rawValue] = newValue }
  }

  /// All phases together.
  public var total: Double { seconds.reduce(0, +) }
  /// The rank's own work: every phase but waiting and the all-reduces.
  public var compute: Double { Phase.allCases.filter(\.isCompute).reduce(0) { $0 + self[$1] } }

  public static func - (a: PhaseTimes, b: PhaseTimes) -> PhaseTimes {
    PhaseTimes(seconds: zip(a.seconds, b.seconds).map(-))
  }

  /// Every phase divided by `count` (per-update means).
  public func divided(by count: Double) -> PhaseTimes {
    PhaseTimes(seconds: seconds.map { $0 / max(count, 1e-300) })
  }

  private struct Key: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
  }

  public init(from decoder: any Decoder) throws {
    let container = try decoder.container(keyedBy: Key.self)
    self.init()
    for phase in Phase.allCases {
      self[phase] = try container.decodeIfPresent(Double.self, forKey: Key(stringValue: phase.key)) ?? 0
    }
  }

  public func encode(to encoder: any Encoder) throws {
    var container = encoder.container(keyedBy: Key.self)
    for phase in Phase.allCases { try container.encode(self[phase], forKey: Key(stringValue: phase.key)) }
  }

  /// The phases as a JSON object's fields.
  public var fields: [String: Double] {
    Dictionary(uniqueKeysWithValues: Phase.allCases.map { ($0.key, self[$0]) })
  }
}

/// Accumulates one rank's time per phase. Code bound to a clock (`PhaseClock.$current`)
/// charges its kernels through `measure`: the innermost phase gets the time, so an outer
/// phase (the whole step as `.elementwise`) keeps only what no kernel inside it claimed.
/// Unbound, `measure` is the body alone. Not thread-safe: one clock per rank thread.
public final class PhaseClock: @unchecked Sendable {
  /// The clock kernels on this thread (or task) charge, if any.
  @TaskLocal public static var current: PhaseClock?

  /// Nanoseconds by `Phase.rawValue`.
  private var nanoseconds = [UInt64](repeating: 0, count: Phase.allCases.count)
  private var running: Phase?
  private var since: UInt64 = 0

  public init() {}

  /// The seconds charged so far.
  public var times: PhaseTimes { PhaseTimes(seconds: nanoseconds.map { Double($0) / 1e9 }) }

  /// Runs `body`, charging its time to `phase` on the bound clock (less what phases inside
  /// it charge).
  @inline(__always)
  public static func measure<R>(_ phase: Phase, _ body: () throws -> R) rethrows -> R {
    guard let clock = current else { return try body() }
    return try clock.measure(phase, body)
  }

  /// Runs `body`, charging its time to `phase` on this clock.
  public func measure<R>(_ phase: Phase, _ body: () throws -> R) rethrows -> R {
    let outer = running
    switchTo(phase)
    defer { switchTo(outer) }
    return try body()
  }

  private func switchTo(_ phase: Phase?) {
    let now = DispatchTime.now().uptimeNanoseconds
    if let running { nanoseconds[running.rawValue] &+= now &- since }
    running = phase
    since = now
  }
}
