import LoRAKernels

/// The outcome of one collective check on one rank.
public struct CollectiveCheckResult: Sendable, Codable, Equatable {
  public var name: String
  public var passed: Bool
  /// What went wrong, empty when passed.
  public var detail: String

  public init(name: String, passed: Bool, detail: String) {
    self.name = name
    self.passed = passed
    self.detail = detail
  }
}

/// Checks every `Communicator` backend must pass: each collective on data whose result is
/// known exactly, on sizes that cross the backends' internal protocol switches.
///
/// The same checks run against the local thread backend in `swift test` and against MPI
/// under a real `mpirun` (through `swift-lora-dist doctor`), so a cluster's MPI is verified
/// with the code the trainer uses. Every rank must call `run` together.
public enum CollectiveChecks {
  /// Runs all checks; a failing check records its reason and the rest still run.
  public static func run(on comm: any Communicator) -> [CollectiveCheckResult] {
    let checks: [(String, (any Communicator) throws -> String?)] = [
      ("allreduce sum", allreduceSum),
      ("allreduce average", allreduceAverage),
      ("allreduce max and min", allreduceMaxMin),
      ("allreduce double sum", allreduceDouble),
      ("allreduce 12 MiB in place", allreduceLarge),
      ("allreduce results identical on all ranks", allreduceIdentical),
      ("broadcast tensor", broadcastTensor),
      ("broadcast bytes of root's length", broadcastBytes),
      ("allgather bytes of differing lengths", allgatherBytes),
      ("node-shared buffer seen by every rank of a node", nodeShared),
      (
        "barrier",
        {
          try $0.barrier()
          return nil
        }
      ),
      ("split by colour and key", splitByParity),
      ("shared counters hand out every number once", sharedCounters),
      ("invalid root is a typed error", invalidRoot),
    ]
    return checks.map { name, check in
      do {
        let problem = try check(comm)
        return CollectiveCheckResult(name: name, passed: problem == nil, detail: problem ?? "")
      } catch {
        return CollectiveCheckResult(name: name, passed: false, detail: "\(error)")
      }
    }
  }

  /// Rank r contributes `r + 1 + i/2` at index i: exact in Float, so the sum is exact.
  private static func allreduceSum(_ comm: any Communicator) throws -> String? {
    let t = Tensor(shape: [1000], values: (0..<1000).map { Float(comm.rank + 1) + Float($0) / 2 })
    try comm.allreduce(t, .sum)
    let n = Float(comm.size)
    return firstMismatch(t.values) { i in n * (n + 1) / 2 + n * Float(i) / 2 }
  }

  private static func allreduceAverage(_ comm: any Communicator) throws -> String? {
    let t = Tensor(shape: [257], values: (0..<257).map { _ in Float(comm.rank * 2) })
    try comm.allreduce(t, .average)
    let expected = Float(comm.size - 1)
    return firstMismatch(t.values, tolerance: 1e-6) { _ in expected }
  }

  private static func allreduceMaxMin(_ comm: any Communicator) throws -> String? {
    let values = (0..<64).map { Float(($0 + comm.rank) % comm.size) - 0.5 }
    let high = Tensor(shape: [64], values: values)
    let low = Tensor(shape: [64], values: values)
    try comm.allreduce(high, .max)
    try comm.allreduce(low, .min)
    return firstMismatch(high.values) { _ in Float(comm.size - 1) - 0.5 }
      ?? firstMismatch(low.values) { _ in -0.5 }
  }

  private static func allreduceDouble(_ comm: any Communicator) throws -> String? {
    var values: [Double] = [Double(comm.rank), 1e12, -Double(comm.rank) * 0.25]
    try comm.allreduce(&values, .sum)
    let n = Double(comm.size)
    let expected = [n * (n - 1) / 2, n * 1e12, -n * (n - 1) / 8]
    return values == expected ? nil : "got \(values), expected \(expected)"
  }

  /// 3 Mi floats: past every eager limit, so MPI's pipelined or segmented paths run.
  /// Rank r holds `(i + r) mod 1024`; the sum over ranks is exact in Float.
  private static func allreduceLarge(_ comm: any Communicator) throws -> String? {
    let count = 3 << 20
    let t = Tensor(shape: [count], values: (0..<count).map { Float(($0 &+ comm.rank) & 1023) })
    try comm.allreduce(t, .sum)
    let n = comm.size
    let values = t.values
    for i in stride(from: 0, to: count, by: 1) {
      let low = i & 1023
      // Σ_r ((low + r) mod 1024) for r < n, with n ≤ 1024 ranks wrapping at most once.
      let wraps = max(0, low + n - 1024)
      let expected = Float(n * low + n * (n - 1) / 2 - 1024 * wraps)
      if values[i] != expected { return "element \(i) is \(values[i]), expected \(expected)" }
    }
    return nil
  }

  /// Rounding differs with summation order; ranks must still agree bit for bit, or
  /// data-parallel replicas drift apart.
  private static func allreduceIdentical(_ comm: any Communicator) throws -> String? {
    var state = UInt64(comm.rank + 1) &* 0x9E37_79B9_7F4A_7C15
    let t = Tensor(zeros: [4099])
    for i in 0..<t.count {
      state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
      t[i] = Float(Int64(bitPattern: state >> 11) % 1_000_003) * 1e-3 + 0.1
    }
    try comm.allreduce(t, .sum)
    let digest = t.values.reduce(UInt64(14_695_981_039_346_656_037)) { hash, value in
      (hash ^ UInt64(value.bitPattern)) &* 1_099_511_628_211
    }
    let all = try comm.allgather(withUnsafeBytes(of: digest) { Array($0) })
    let distinct = Set(all)
    return distinct.count == 1 ? nil : "ranks hold \(distinct.count) different results"
  }

  private static func broadcastTensor(_ comm: any Communicator) throws -> String? {
    let root = comm.size - 1
    let t = Tensor(shape: [300], values: (0..<300).map { Float(comm.rank == root ? $0 : -1) })
    try comm.broadcast(t, root: root)
    return firstMismatch(t.values) { Float($0) }
  }

  private static func broadcastBytes(_ comm: any Communicator) throws -> String? {
    let root = comm.size / 2
    let message = Array("rank \(root) speaks; ünïcödé survives".utf8)
    var bytes = comm.rank == root ? message : [UInt8](repeating: 7, count: comm.rank)
    try comm.broadcast(&bytes, root: root)
    return bytes == message ? nil : "got \(bytes.count) bytes, expected \(message.count)"
  }

  private static func allgatherBytes(_ comm: any Communicator) throws -> String? {
    let mine = [UInt8](repeating: UInt8(comm.rank % 256), count: comm.rank * 3)
    let all = try comm.allgather(mine)
    guard all.count == comm.size else { return "got \(all.count) parts for \(comm.size) ranks" }
    for (r, part) in all.enumerated() where part != [UInt8](repeating: UInt8(r % 256), count: r * 3) {
      return "rank \(r)'s part arrived as \(part.count) bytes"
    }
    return nil
  }

  /// Even and odd ranks split apart, each ordered by descending rank.
  private static func splitByParity(_ comm: any Communicator) throws -> String? {
    let child = try comm.split(colour: comm.rank % 2, key: -comm.rank)
    let members = stride(from: comm.rank % 2, to: comm.size, by: 2).reversed().map { $0 }
    guard child.size == members.count, members[child.rank] == comm.rank else {
      return "rank \(comm.rank) became \(child.rank) of \(child.size), expected \(members)"
    }
    var sum: [Double] = [Double(comm.rank)]
    try child.allreduce(&sum, .sum)
    let expected = Double(members.reduce(0, +))
    return sum[0] == expected ? nil : "group sum \(sum[0]), expected \(expected)"
  }

  /// The filler of each node writes a pattern; after `ready` every sharer reads it, and the
  /// sharer counts add up to the group.
  private static func nodeShared(_ comm: any Communicator) throws -> String? {
    let count = 100_003
    let buffer = try comm.nodeSharedBuffer(count: count)
    if buffer.filler {
      for i in 0..<count { buffer.tensor[i] = Float(i % 251) - 125 }
    }
    try buffer.ready()
    for i in 0..<count where buffer.tensor[i] != Float(i % 251) - 125 {
      return "element \(i) is \(buffer.tensor[i]), expected \(Float(i % 251) - 125)"
    }
    var fillers = [buffer.filler ? 1.0 : 0.0, buffer.filler ? Double(buffer.sharers) : 0]
    try comm.allreduce(&fillers, .sum)
    if Int(fillers[1]) != comm.size {
      return
        "the nodes' sharers add up to \(Int(fillers[1])) ranks of \(comm.size) (\(Int(fillers[0])) node(s))"
    }
    try buffer.ready()  // no rank frees the window while another still reads it
    return nil
  }

  /// Every rank claims 5 numbers from each of two counters, interleaved; over all ranks the
  /// claims are distinct and cover 0..<5·size. A third counter is never touched, and an index
  /// past the last is a typed error.
  private static func sharedCounters(_ comm: any Communicator) throws -> String? {
    let claims = 5
    let counters = try comm.makeCounters(3)
    return try withExtendedLifetime(counters) {
      var mine: [Int64] = []
      for _ in 0..<claims {
        mine.append(Int64(try counters.next(0)))
        mine.append(Int64(try counters.next(1)) + 1_000_000)
      }
      do {
        _ = try counters.next(3)
        return "counter 3 of 3 did not throw"
      } catch CommunicatorError.invalidArgument {}
      let bytes = mine.withUnsafeBytes { Array($0) }
      let all = try comm.allgather(bytes).flatMap { part in
        part.withUnsafeBytes { Array($0.bindMemory(to: Int64.self)) }
      }
      // Every rank has added its claims before anyone reads the untouched counter.
      let untouched = try counters.next(2)
      try comm.barrier()
      let total = claims * comm.size
      let expected = Set((0..<total).map(Int64.init) + (0..<total).map { Int64($0) + 1_000_000 })
      guard all.count == 2 * total, Set(all) == expected else {
        return "claims \(all.sorted()) are not 0..<\(total) on each counter, each once"
      }
      return untouched < comm.size ? nil : "the untouched counter stood at \(untouched)"
    }
  }

  private static func invalidRoot(_ comm: any Communicator) throws -> String? {
    let t = Tensor(zeros: [4])
    do {
      try comm.broadcast(t, root: comm.size)
      return "broadcast from rank \(comm.size) of \(comm.size) did not throw"
    } catch CommunicatorError.invalidArgument {
      return nil
    }
  }

  private static func firstMismatch(
    _ values: [Float], tolerance: Float = 0, expected: (Int) -> Float
  ) -> String? {
    for (i, value) in values.enumerated() {
      let want = expected(i)
      if abs(value - want) > tolerance * max(1, abs(want)) {
        return "element \(i) is \(value), expected \(want)"
      }
    }
    return nil
  }
}
