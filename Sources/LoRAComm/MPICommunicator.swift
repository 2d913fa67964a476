import CMPI
import Glibc
import LoRAKernels
import Synchronization

/// Process-wide MPI state: initialisation, finalisation, abort and library facts.
///
/// MPI is initialised once, on first use, with `MPI_THREAD_MULTIPLE`: the project calls MPI
/// from one thread at a time, but Open MPI's one-sided `pt2pt` component — the one that
/// serves the job queue's counters (`makeCounters`) between hosts over TCP — works only at
/// that level. Before that, `OMPI_MCA_osc` is set to `^rdma` unless the user set it: Open MPI
/// 4.1's `rdma` component takes windows it cannot serve without RDMA hardware and fails
/// `MPI_Win_allocate` with MPI_ERR_WIN; without it, `sm` (one node), `ucx` or `pt2pt` serve
/// them. (Other MPI implementations ignore the variable.) Every MPI return code is checked
/// and turned into a `CommunicatorError.mpi` carrying MPI's error string.
public enum MPIEnvironment {
  private struct State {
    var initialized = false
    var finalized = false
  }
  private static let state = Mutex(State())

  /// True when this process was started by an MPI launcher (`mpirun`, `mpiexec`, `srun`
  /// with PMI/PMIx), judged from the variables launchers set.
  public static func launchedByMPI(environment: [String: String]) -> Bool {
    let markers = ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", "MPI_LOCALNRANKS"]
    return markers.contains { environment[$0] != nil }
  }

  /// Initialises MPI if this process has not yet done so.
  public static func initialize() throws {
    try state.withLock { state in
      if state.initialized { return }
      if state.finalized {
        throw CommunicatorError.invalidArgument("MPI was already finalized in this process")
      }
      var already: Int32 = 0
      try check(MPI_Initialized(&already), "MPI_Initialized")
      if already == 0 {
        var provided: Int32 = 0
        setenv("OMPI_MCA_osc", "^rdma", 0)
        try check(MPI_Init_thread(nil, nil, cmpi_thread_multiple(), &provided), "MPI_Init_thread")
      }
      // Errors on the predefined communicators return codes too, instead of aborting.
      try check(MPI_Comm_set_errhandler(cmpi_comm_world(), cmpi_errors_return()), "MPI_Comm_set_errhandler")
      try check(MPI_Comm_set_errhandler(cmpi_comm_self(), cmpi_errors_return()), "MPI_Comm_set_errhandler")
      state.initialized = true
    }
  }

  /// Finalises MPI; call once, after the last collective, on every rank.
  public static func finalize() throws {
    try state.withLock { state in
      guard state.initialized, !state.finalized else { return }
      state.finalized = true
      try check(MPI_Finalize(), "MPI_Finalize")
    }
  }

  /// True between `initialize()` and `finalize()`.
  public static var isActive: Bool { state.withLock { $0.initialized && !$0.finalized } }

  /// Stops every rank of the job (`MPI_Abort` on the world communicator) with `code`.
  public static func abort(code: Int32) -> Never {
    MPI_Abort(cmpi_comm_world(), code)
    fatalError("MPI_Abort returned")
  }

  /// The MPI library's own version string (e.g. "Open MPI v4.1.4, …").
  public static func libraryVersion() throws -> String {
    var buffer = [CChar](repeating: 0, count: Int(cmpi_max_library_version_string()) + 1)
    var length: Int32 = 0
    try check(MPI_Get_library_version(&buffer, &length), "MPI_Get_library_version")
    return decodeCString(buffer, length: Int(length))
  }

  /// The name MPI gives this rank's host.
  public static func processorName() throws -> String {
    var buffer = [CChar](repeating: 0, count: Int(cmpi_max_processor_name()) + 1)
    var length: Int32 = 0
    try check(MPI_Get_processor_name(&buffer, &length), "MPI_Get_processor_name")
    return decodeCString(buffer, length: Int(length))
  }

  /// Throws `CommunicatorError.mpi` with MPI's error string unless `code` is `MPI_SUCCESS`.
  static func check(_ code: Int32, _ call: String) throws {
    guard code != cmpi_success() else { return }
    // Open MPI aborts the process if MPI_Error_string is called before MPI_Init.
    var initialized: Int32 = 0
    var message = "MPI is not initialised, so it cannot describe this error"
    if MPI_Initialized(&initialized) == cmpi_success() && initialized != 0 {
      var buffer = [CChar](repeating: 0, count: Int(cmpi_max_error_string()) + 1)
      var length: Int32 = 0
      if MPI_Error_string(code, &buffer, &length) == cmpi_success() {
        message = decodeCString(buffer, length: Int(length))
      }
    }
    throw CommunicatorError.mpi(call: call, code: code, message: message)
  }

  private static func decodeCString(_ buffer: [CChar], length: Int) -> String {
    let bytes = buffer.prefix(max(0, min(length, buffer.count))).map { UInt8(bitPattern: $0) }
    return String(decoding: bytes, as: UTF8.self)
  }
}

/// A communicator over MPI processes. It owns its own MPI communicator (a duplicate of
/// `MPI_COMM_WORLD`, or the result of a split) with errors returned rather than fatal, so
/// every failure surfaces as a thrown `CommunicatorError.mpi`.
public final class MPICommunicator: Communicator, @unchecked Sendable {
  private var handle: MPI_Comm?
  public let rank: Int
  public let size: Int
  public var backend: String { "mpi" }
  /// Bounds every collective's wait on this rank; communicators split from this one share it.
  public var watchdog: CollectiveWatchdog?

  /// A communicator over all ranks of the job (initialises MPI if needed).
  public static func world() throws -> MPICommunicator {
    try MPIEnvironment.initialize()
    var duplicate: MPI_Comm? = cmpi_comm_null()
    try MPIEnvironment.check(MPI_Comm_dup(cmpi_comm_world(), &duplicate), "MPI_Comm_dup")
    return try MPICommunicator(owning: duplicate)
  }

  private init(owning handle: MPI_Comm?) throws {
    self.handle = handle
    try MPIEnvironment.check(
      MPI_Comm_set_errhandler(handle, cmpi_errors_return()), "MPI_Comm_set_errhandler")
    var rank: Int32 = 0
    var size: Int32 = 0
    try MPIEnvironment.check(MPI_Comm_rank(handle, &rank), "MPI_Comm_rank")
    try MPIEnvironment.check(MPI_Comm_size(handle, &size), "MPI_Comm_size")
    self.rank = Int(rank)
    self.size = Int(size)
  }

  deinit {
    if MPIEnvironment.isActive && handle != cmpi_comm_null() {
      _ = MPI_Comm_free(&handle)
    }
  }

  public func allreduce(_ tensor: Tensor, _ operation: ReduceOperation) throws {
    try watched("MPI_Allreduce") {
      try tensor.withUnsafeMutableBufferPointer { buffer in
        try reduceInPlace(buffer.baseAddress, count: buffer.count, type: cmpi_float(), operation)
      }
    }
    if operation == .average { tensor.scale(by: 1 / Float(size)) }
  }

  public func allreduce(_ values: inout [Double], _ operation: ReduceOperation) throws {
    try watched("MPI_Allreduce") {
      try values.withUnsafeMutableBufferPointer { buffer in
        try reduceInPlace(buffer.baseAddress, count: buffer.count, type: cmpi_double(), operation)
      }
    }
    if operation == .average {
      for i in values.indices { values[i] /= Double(size) }
    }
  }

  public func broadcast(_ tensor: Tensor, root: Int) throws {
    try validateRoot(root)
    try watched("MPI_Bcast") { try broadcastInPlace(tensor, root: root) }
  }

  private func broadcastInPlace(_ tensor: Tensor, root: Int) throws {
    try tensor.withUnsafeMutableBufferPointer { buffer in
      try chunked(count: buffer.count) { offset, count in
        try MPIEnvironment.check(
          MPI_Bcast(buffer.baseAddress! + offset, count, cmpi_float(), Int32(root), handle),
          "MPI_Bcast")
      }
    }
  }

  public func broadcast(_ bytes: inout [UInt8], root: Int) throws {
    try validateRoot(root)
    try watched("MPI_Bcast") { try broadcastInPlace(&bytes, root: root) }
  }

  private func broadcastInPlace(_ bytes: inout [UInt8], root: Int) throws {
    var length = Int64(bytes.count)
    try MPIEnvironment.check(MPI_Bcast(&length, 1, cmpi_int64(), Int32(root), handle), "MPI_Bcast")
    if rank != root { bytes = [UInt8](repeating: 0, count: Int(length)) }
    try bytes.withUnsafeMutableBufferPointer { buffer in
      try chunked(count: buffer.count) { offset, count in
        try MPIEnvironment.check(
          MPI_Bcast(buffer.baseAddress! + offset, count, cmpi_byte(), Int32(root), handle),
          "MPI_Bcast")
      }
    }
  }

  public func allgather(_ bytes: [UInt8]) throws -> [[UInt8]] {
    try watched("MPI_Allgather") { try gather(bytes) }
  }

  private func gather(_ bytes: [UInt8]) throws -> [[UInt8]] {
    guard bytes.count <= Int(Int32.max) else {
      throw CommunicatorError.invalidArgument("allgather of \(bytes.count) bytes exceeds 2 GiB")
    }
    var myCount = Int32(bytes.count)
    var counts = [Int32](repeating: 0, count: size)
    try MPIEnvironment.check(
      MPI_Allgather(&myCount, 1, cmpi_int(), &counts, 1, cmpi_int(), handle), "MPI_Allgather")
    var displacements = [Int32](repeating: 0, count: size)
    var total = 0
    for r in 0..<size {
      guard total <= Int(Int32.max) else {
        throw CommunicatorError.invalidArgument("allgather total exceeds 2 GiB")
      }
      displacements[r] = Int32(total)
      total += Int(counts[r])
    }
    var gathered = [UInt8](repeating: 0, count: total)
    var send = bytes
    try MPIEnvironment.check(
      MPI_Allgatherv(&send, myCount, cmpi_byte(), &gathered, &counts, &displacements, cmpi_byte(), handle),
      "MPI_Allgatherv")
    return (0..<size).map { r in
      Array(gathered[Int(displacements[r])..<Int(displacements[r]) + Int(counts[r])])
    }
  }

  public func barrier() throws {
    try watched("MPI_Barrier") { try MPIEnvironment.check(MPI_Barrier(handle), "MPI_Barrier") }
  }

  public func split(colour: Int, key: Int) throws -> any Communicator {
    guard colour >= 0, colour <= Int(Int32.max), abs(key) <= Int(Int32.max) else {
      throw CommunicatorError.invalidArgument("split colour must be in 0...\(Int32.max), got \(colour)")
    }
    var child: MPI_Comm? = cmpi_comm_null()
    try watched("MPI_Comm_split") {
      try MPIEnvironment.check(MPI_Comm_split(handle, Int32(colour), Int32(key), &child), "MPI_Comm_split")
    }
    let split = try MPICommunicator(owning: child)
    split.watchdog = watchdog
    return split
  }

  /// An MPI-3 shared-memory window on the node communicator (`MPI_Comm_split_type` with
  /// `MPI_COMM_TYPE_SHARED`): the node's first rank allocates `count` floats, the others map
  /// the same pages (`MPI_Win_shared_query`), so the node holds one copy.
  public func nodeSharedBuffer(count: Int) throws -> NodeSharedBuffer {
    var node: MPI_Comm? = cmpi_comm_null()
    try MPIEnvironment.check(
      MPI_Comm_split_type(handle, cmpi_comm_type_shared(), Int32(rank), cmpi_info_null(), &node),
      "MPI_Comm_split_type")
    let nodeComm = try MPICommunicator(owning: node)
    let window = try SharedWindow(
      bytes: nodeComm.rank == 0 ? max(count, 1) * MemoryLayout<Float>.size : 0, communicator: nodeComm)
    let tensor = Tensor(
      external: window.base.assumingMemoryBound(to: Float.self), shape: [count], owner: window)
    if nodeComm.rank == 0 { tensor.zero() }
    return NodeSharedBuffer(tensor: tensor, filler: nodeComm.rank == 0, sharers: nodeComm.size) {
      try nodeComm.barrier()
    }
  }

  /// An RMA window of `count` 64-bit integers on rank 0 (`MPI_Win_allocate`; the other
  /// ranks expose none); `next` is `MPI_Fetch_and_op` with `MPI_SUM` under a shared lock.
  public func makeCounters(_ count: Int) throws -> any SharedCounters {
    try MPICounters(count: count, communicator: self)
  }

  /// The raw handle, for the windows of the same file.
  fileprivate var rawHandle: MPI_Comm? { handle }

  /// `MPI_Allreduce` with `MPI_IN_PLACE`, in chunks of at most 2³¹−1 elements.
  private func reduceInPlace(
    _ base: UnsafeMutableRawPointer?, count: Int, type: MPI_Datatype?, _ operation: ReduceOperation
  ) throws {
    guard let base else { return }
    let op: MPI_Op? =
      switch operation {
      case .sum, .average: cmpi_op_sum()
      case .max: cmpi_op_max()
      case .min: cmpi_op_min()
      }
    var typeSize: Int32 = 0
    try MPIEnvironment.check(MPI_Type_size(type, &typeSize), "MPI_Type_size")
    try chunked(count: count) { offset, chunk in
      try MPIEnvironment.check(
        MPI_Allreduce(cmpi_in_place(), base + offset * Int(typeSize), chunk, type, op, handle),
        "MPI_Allreduce")
    }
  }

  /// `body` (one collective MPI call named `call`) under the watchdog, when there is one.
  private func watched<T>(_ call: String, _ body: () throws -> T) rethrows -> T {
    watchdog?.enter(call)
    defer { watchdog?.leave() }
    return try body()
  }

  /// Calls `body(elementOffset, elementCount)` over `count` elements in pieces of at most
  /// 2³¹−1 (MPI counts are 32-bit). Does nothing for `count == 0`, on every rank alike.
  private func chunked(count: Int, _ body: (Int, Int32) throws -> Void) throws {
    let limit = Int(Int32.max)
    var start = 0
    while start < count {
      let chunk = min(limit, count - start)
      try body(start, Int32(chunk))
      start += chunk
    }
  }
}

/// An `MPI_Win_allocate_shared` window whose memory belongs to the node's rank 0; freed
/// (collectively, as MPI requires) when the last tensor over it goes away.
private final class SharedWindow: @unchecked Sendable {
  private var window: MPI_Win? = cmpi_win_null()
  let base: UnsafeMutableRawPointer
  private let communicator: MPICommunicator

  init(bytes: Int, communicator: MPICommunicator) throws {
    self.communicator = communicator
    var local: UnsafeMutableRawPointer?
    try MPIEnvironment.check(
      MPI_Win_allocate_shared(
        MPI_Aint(bytes), Int32(MemoryLayout<Float>.size), cmpi_info_null(), communicator.rawHandle, &local,
        &window),
      "MPI_Win_allocate_shared")
    var size: MPI_Aint = 0
    var unit: Int32 = 0
    var shared: UnsafeMutableRawPointer?
    try MPIEnvironment.check(MPI_Win_shared_query(window, 0, &size, &unit, &shared), "MPI_Win_shared_query")
    guard let shared else {
      throw CommunicatorError.invalidArgument("MPI_Win_shared_query returned no memory for the node's rank 0")
    }
    base = shared
  }

  deinit {
    if MPIEnvironment.isActive { _ = MPI_Win_free(&window) }
  }
}

/// Counters in an `MPI_Win_allocate` window on rank 0 of a communicator: any rank adds to
/// one with `MPI_Fetch_and_op` in a passive-target epoch, without rank 0 taking part. The
/// window is freed (collectively, as MPI requires) when the object goes away, so every rank
/// must release it at the same point of the program.
private final class MPICounters: SharedCounters, @unchecked Sendable {
  private var window: MPI_Win? = cmpi_win_null()
  let count: Int
  private let communicator: MPICommunicator

  init(count: Int, communicator: MPICommunicator) throws {
    guard count >= 0 else { throw CommunicatorError.invalidArgument("counter count \(count) is negative") }
    self.count = count
    self.communicator = communicator
    let size = MemoryLayout<Int64>.size
    var base: UnsafeMutableRawPointer?
    try MPIEnvironment.check(
      MPI_Win_allocate(
        MPI_Aint(communicator.rank == 0 ? max(count, 1) * size : 0), Int32(size), cmpi_info_null(),
        communicator.rawHandle, &base, &window),
      "MPI_Win_allocate")
    if communicator.rank == 0 {
      // Local stores to window memory belong in an exclusive epoch on the own rank.
      try MPIEnvironment.check(MPI_Win_lock(cmpi_lock_exclusive(), 0, 0, window), "MPI_Win_lock")
      if let base { base.initializeMemory(as: Int64.self, repeating: 0, count: max(count, 1)) }
      try MPIEnvironment.check(MPI_Win_unlock(0, window), "MPI_Win_unlock")
    }
    // No rank adds before rank 0 has zeroed the counters.
    try communicator.barrier()
  }

  deinit {
    if MPIEnvironment.isActive && window != cmpi_win_null() { _ = MPI_Win_free(&window) }
  }

  func next(_ index: Int) throws -> Int {
    try validateIndex(index)
    var one: Int64 = 1
    var before: Int64 = 0
    try MPIEnvironment.check(MPI_Win_lock(cmpi_lock_shared(), 0, 0, window), "MPI_Win_lock")
    let added = MPI_Fetch_and_op(&one, &before, cmpi_int64(), 0, MPI_Aint(index), cmpi_op_sum(), window)
    // The epoch is closed even when the operation failed, so the window stays usable.
    let unlocked = MPI_Win_unlock(0, window)
    try MPIEnvironment.check(added, "MPI_Fetch_and_op")
    try MPIEnvironment.check(unlocked, "MPI_Win_unlock")
    return Int(before)
  }
}
