import Foundation
import LoRAKernels
import Synchronization

/// Ranks as threads of one process: the communicator tests and laptops use.
///
/// `LocalCommunicator.run(ranks:)` starts one thread per rank and hands each its
/// communicator. Collectives meet at a rendezvous guarded by one lock per cluster; every
/// reduction adds the ranks' values in rank order, so all ranks get bit-identical results.
/// When a rank's body throws, the cluster is aborted: the other ranks' pending and future
/// collectives throw `CommunicatorError.aborted`, and `run` rethrows the first real error.
public final class LocalCommunicator: Communicator, @unchecked Sendable {
  private let group: LocalGroup
  public let rank: Int
  public var size: Int { group.size }
  public var backend: String { "local" }

  fileprivate init(group: LocalGroup, rank: Int) {
    self.group = group
    self.rank = rank
  }

  /// A one-rank communicator: every collective returns at once with this rank's data.
  public static func single() -> LocalCommunicator {
    LocalCommunicator(group: LocalGroup(size: 1, cluster: LocalCluster()), rank: 0)
  }

  /// Runs `body` on `ranks` threads, each with its own rank's communicator, and returns
  /// their results in rank order.
  public static func run<Result: Sendable>(
    ranks: Int, _ body: @escaping @Sendable (LocalCommunicator) throws -> Result
  ) throws -> [Result] {
    precondition(ranks >= 1, "a local cluster needs at least one rank")
    let cluster = LocalCluster()
    let group = LocalGroup(size: ranks, cluster: cluster)
    let outcomes = LocalOutcomes<Result>(count: ranks)
    let done = DispatchGroup()
    for rank in 0..<ranks {
      done.enter()
      let thread = Thread {
        defer { done.leave() }
        do {
          outcomes.set(rank, .success(try body(LocalCommunicator(group: group, rank: rank))))
        } catch {
          outcomes.set(rank, .failure(error))
          cluster.abort(rank: rank, reason: "\(error)")
        }
      }
      thread.stackSize = 16 << 20
      thread.start()
    }
    done.wait()
    return try outcomes.results()
  }

  /// Thread-ranks share the process, so rank 0's allocation serves all of them.
  public func nodeSharedBuffer(count: Int) throws -> NodeSharedBuffer {
    let mine: Tensor? = rank == 0 ? Tensor(zeros: [count]) : nil
    let all = try group.exchange(rank: rank, mine)
    guard let tensor = all[0], tensor.count == count else {
      throw CommunicatorError.invalidArgument("node-shared buffers of different sizes")
    }
    return NodeSharedBuffer(tensor: tensor, filler: rank == 0, sharers: size) { [self] in try barrier() }
  }

  /// Thread-ranks share rank 0's counters, guarded by a mutex.
  public func makeCounters(_ count: Int) throws -> any SharedCounters {
    guard count >= 0 else { throw CommunicatorError.invalidArgument("counter count \(count) is negative") }
    let all = try group.exchange(rank: rank, rank == 0 ? LocalCounters(count: count) : nil)
    guard let counters = all[0], counters.count == count else {
      throw CommunicatorError.invalidArgument("counters of different counts")
    }
    return counters
  }

  public func allreduce(_ tensor: Tensor, _ operation: ReduceOperation) throws {
    let all = try group.exchange(rank: rank, tensor.clone())
    try requireSameCount(all.map(\.count), "allreduce")
    // Every rank adds in rank order, so all get bit-identical results.
    let result = all[0].clone()
    for contribution in all.dropFirst() {
      switch operation {
      case .sum, .average: result.add(contribution)
      case .max: result.maximum(contribution)
      case .min: result.minimum(contribution)
      }
    }
    if operation == .average { result.scale(by: 1 / Float(size)) }
    tensor.copy(from: result)
  }

  public func allreduce(_ values: inout [Double], _ operation: ReduceOperation) throws {
    let all = try group.exchange(rank: rank, values)
    try requireSameCount(all.map(\.count), "allreduce")
    values = LocalCommunicator.reduce(all, operation, size: size)
  }

  public func broadcast(_ tensor: Tensor, root: Int) throws {
    try validateRoot(root)
    let all = try group.exchange(rank: rank, tensor.clone())
    try requireSameCount(all.map(\.count), "broadcast")
    if rank != root { tensor.copy(from: all[root]) }
  }

  public func broadcast(_ bytes: inout [UInt8], root: Int) throws {
    try validateRoot(root)
    bytes = try group.exchange(rank: rank, bytes)[root]
  }

  public func allgather(_ bytes: [UInt8]) throws -> [[UInt8]] {
    try group.exchange(rank: rank, bytes)
  }

  public func barrier() throws {
    _ = try group.exchange(rank: rank, 0)
  }

  public func split(colour: Int, key: Int) throws -> any Communicator {
    let requests = try group.exchange(rank: rank, [colour, key])
    if let bad = requests.firstIndex(where: { $0[0] < 0 }) {
      throw CommunicatorError.invalidArgument(
        "split colour must be non-negative, rank \(bad) passed \(requests[bad][0])")
    }
    let members = requests.indices.filter { requests[$0][0] == colour }
      .sorted { (requests[$0][1], $0) < (requests[$1][1], $1) }
    let leader = members[0]
    let created = rank == leader ? LocalGroup(size: members.count, cluster: group.cluster) : nil
    let groups = try group.exchange(rank: rank, created)
    guard let child = groups[leader], let newRank = members.firstIndex(of: rank) else {
      throw CommunicatorError.invalidArgument("split lost its group leader")
    }
    return LocalCommunicator(group: child, rank: newRank)
  }

  private func requireSameCount(_ counts: [Int], _ collective: String) throws {
    guard let first = counts.first, counts.allSatisfy({ $0 == first }) else {
      throw CommunicatorError.invalidArgument("\(collective) counts differ between ranks: \(counts)")
    }
  }

  /// Element-wise reduction in rank order (the same order on every rank).
  private static func reduce(_ all: [[Double]], _ operation: ReduceOperation, size: Int) -> [Double] {
    var result = all[0]
    for contribution in all.dropFirst() {
      for i in result.indices {
        switch operation {
        case .sum, .average: result[i] += contribution[i]
        case .max: result[i] = Swift.max(result[i], contribution[i])
        case .min: result[i] = Swift.min(result[i], contribution[i])
        }
      }
    }
    if operation == .average {
      let scale = 1 / Double(size)
      for i in result.indices { result[i] *= scale }
    }
    return result
  }
}

/// Counters of thread-ranks: one array behind a mutex.
private final class LocalCounters: SharedCounters, Sendable {
  let count: Int
  private let values: Mutex<[Int]>

  init(count: Int) {
    self.count = count
    values = Mutex([Int](repeating: 0, count: count))
  }

  func next(_ index: Int) throws -> Int {
    try validateIndex(index)
    return values.withLock { values in
      defer { values[index] += 1 }
      return values[index]
    }
  }
}

/// State shared by every group of one local cluster: the lock all rendezvous use and the
/// abort flag that releases them when a rank fails.
private final class LocalCluster: @unchecked Sendable {
  let condition = NSCondition()
  var abortedBy: (rank: Int, reason: String)?

  func abort(rank: Int, reason: String) {
    condition.lock()
    if abortedBy == nil { abortedBy = (rank, reason) }
    condition.broadcast()
    condition.unlock()
  }
}

/// One communicator's rendezvous: each collective deposits every rank's contribution and
/// hands all of them, in rank order, to every rank.
private final class LocalGroup: @unchecked Sendable {
  let size: Int
  let cluster: LocalCluster
  private var slots: [Any?]
  private var arrived = 0
  private var generation = 0
  private var published: [Any?] = []

  init(size: Int, cluster: LocalCluster) {
    self.size = size
    self.cluster = cluster
    self.slots = Array(repeating: nil, count: size)
  }

  func exchange<Value>(rank: Int, _ value: Value) throws -> [Value] {
    if size == 1 { return [value] }
    let condition = cluster.condition
    condition.lock()
    defer { condition.unlock() }
    if let aborted = cluster.abortedBy {
      throw CommunicatorError.aborted(byRank: aborted.rank, reason: aborted.reason)
    }
    slots[rank] = value
    arrived += 1
    let myGeneration = generation
    if arrived == size {
      published = slots
      slots = Array(repeating: nil, count: size)
      arrived = 0
      generation += 1
      condition.broadcast()
    } else {
      while generation == myGeneration {
        if let aborted = cluster.abortedBy {
          throw CommunicatorError.aborted(byRank: aborted.rank, reason: aborted.reason)
        }
        condition.wait()
      }
    }
    return published.map { $0 as! Value }
  }
}

/// Per-rank results of `LocalCommunicator.run`, written by the rank threads.
private final class LocalOutcomes<Value>: @unchecked Sendable {
  private let lock = NSLock()
  private var outcomes: [Swift.Result<Value, any Error>?]

  init(count: Int) { outcomes = Array(repeating: nil, count: count) }

  func set(_ rank: Int, _ outcome: Swift.Result<Value, any Error>) {
    lock.withLock { outcomes[rank] = outcome }
  }

  /// The values in rank order, or the first error that is not a consequence of another
  /// rank's abort.
  func results() throws -> [Value] {
    let all = lock.withLock { outcomes }
    var firstError: (any Error)?
    for outcome in all {
      if case .failure(let error) = outcome {
        if case CommunicatorError.aborted = error {
          firstError = firstError ?? error
          continue
        }
        throw error
      }
    }
    if let firstError { throw firstError }
    return all.map { try! $0!.get() }
  }
}
