import LoRAKernels

/// How `allreduce` combines the ranks' values element by element.
public enum ReduceOperation: String, Sendable, Codable, CaseIterable {
  case sum
  /// The sum divided by the communicator's size.
  case average
  case max
  case min
}

/// A group of ranks that run the same program and exchange data collectively.
///
/// Every rank of the group must call the same collectives in the same order with matching
/// sizes. Three backends implement it: `MPICommunicator` (processes under `mpirun`),
/// `LocalCommunicator` (ranks as threads of one process, for tests and laptops) and
/// `LocalCommunicator.single()` (one rank, no exchange).
public protocol Communicator: AnyObject, Sendable {
  /// This rank's index, `0..<size`.
  var rank: Int { get }
  /// Number of ranks in the group.
  var size: Int { get }
  /// A short name of the backend, e.g. "mpi" or "local".
  var backend: String { get }

  /// Combines `tensor` element-wise across all ranks, leaving the result on every rank.
  /// - tensor: any shape; the same count on every rank.
  func allreduce(_ tensor: Tensor, _ operation: ReduceOperation) throws
  /// Combines `values` element-wise across all ranks, in double precision.
  func allreduce(_ values: inout [Double], _ operation: ReduceOperation) throws
  /// Copies `tensor` from rank `root` to every rank (same count everywhere).
  func broadcast(_ tensor: Tensor, root: Int) throws
  /// Copies `bytes` from rank `root` to every rank; other ranks' arrays take root's length.
  func broadcast(_ bytes: inout [UInt8], root: Int) throws
  /// Every rank's `bytes` (lengths may differ), in rank order, on every rank.
  func allgather(_ bytes: [UInt8]) throws -> [[UInt8]]
  /// Returns when every rank has called it.
  func barrier() throws
  /// Splits the group: ranks passing the same `colour` (≥ 0) form a new communicator, ordered
  /// by `key` and then by their rank here.
  func split(colour: Int, key: Int) throws -> any Communicator
  /// One zeroed buffer of `count` floats per node, shared by this group's ranks on that node
  /// (collective). Exactly one rank per node is its `filler`; the others must not read it
  /// before `ready()` (a barrier of the node's ranks) returns.
  func nodeSharedBuffer(count: Int) throws -> NodeSharedBuffer
  /// `count` counters, all starting at 0, that every rank of this group can increment
  /// atomically at any time, without the others taking part (collective to create; create
  /// them before splitting, so ranks of different groups share them). Dynamic load
  /// balancing: a rank claims work item i when `next(i)` returns 0.
  func makeCounters(_ count: Int) throws -> any SharedCounters
}

/// Counters shared by the ranks of a communicator (see `Communicator.makeCounters`).
public protocol SharedCounters: AnyObject, Sendable {
  /// How many counters there are.
  var count: Int { get }
  /// Adds 1 to counter `index` and returns its value before: an atomic fetch-and-add that
  /// every rank sees in one order, whichever rank calls it and when.
  func next(_ index: Int) throws -> Int
}

extension SharedCounters {
  /// Adds 1 to the first counter and returns its value before.
  public func next() throws -> Int { try next(0) }

  /// Checks that `index` names a counter.
  func validateIndex(_ index: Int) throws {
    guard index >= 0 && index < count else {
      throw CommunicatorError.invalidArgument("counter \(index) is not in 0..<\(count)")
    }
  }
}

/// Memory shared by the ranks of one node (see `Communicator.nodeSharedBuffer`).
public struct NodeSharedBuffer: @unchecked Sendable {
  /// [count]
  public let tensor: Tensor
  /// Whether this rank fills the buffer for its node.
  public let filler: Bool
  /// Ranks sharing it (on this node).
  public let sharers: Int
  /// Returns once every sharer called it (after the filler wrote the buffer).
  public let ready: () throws -> Void

  public init(tensor: Tensor, filler: Bool, sharers: Int, ready: @escaping () throws -> Void) {
    self.tensor = tensor
    self.filler = filler
    self.sharers = sharers
    self.ready = ready
  }
}

extension Communicator {
  /// Checks that `root` names a rank of this group.
  func validateRoot(_ root: Int) throws {
    guard root >= 0 && root < size else {
      throw CommunicatorError.invalidArgument("root rank \(root) is not in 0..<\(size)")
    }
  }
}
