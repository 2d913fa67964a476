/// Why a collective operation failed.
public enum CommunicatorError: Error, Equatable, CustomStringConvertible {
  /// An MPI call returned an error code; `message` is MPI's own error string.
  case mpi(call: String, code: Int32, message: String)
  /// A caller passed an argument the collective cannot use (a root out of range, a
  /// negative colour, buffers whose sizes differ between ranks).
  case invalidArgument(String)
  /// Another rank failed, so this rank's collective cannot complete.
  case aborted(byRank: Int, reason: String)
  /// The ranks were not given the same work (settings, data or model differ).
  case disagreement(String)

  public var description: String {
    switch self {
    case .mpi(let call, let code, let message): return "\(call) failed with MPI error \(code): \(message)"
    case .invalidArgument(let message): return "invalid collective call: \(message)"
    case .aborted(let rank, let reason): return "rank \(rank) failed: \(reason)"
    case .disagreement(let message): return message
    }
  }
}
