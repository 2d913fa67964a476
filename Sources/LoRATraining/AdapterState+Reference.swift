import Foundation
import LoRAComm

/// DPO's reference, scored once: the reference's summed loss of every training sequence
/// (TRL's `precompute_ref_log_probs`), reused by every update instead of a reference pass.
extension AdapterState {
  /// Pairs per chunk of the precomputation: chunks are fixed by the data's order, and ranks
  /// take every size-th chunk, so each value is the same bits on any rank count.
  static let referenceChunkPairs = 64

  /// Whether this adapter's updates read the reference from `referenceTable`:
  /// `options.precomputeReference`, or when unset, when the run takes each pair at least
  /// twice on average (scoring every pair once then costs at most half of scoring each
  /// update's pairs).
  public var precomputesReference: Bool {
    guard options.dpo != nil else { return false }
    return options.precomputeReference ?? (options.steps * options.batchSize >= train.count)
  }

  /// Scores the reference of every training sequence into `referenceTable`: the ranks of
  /// `communicator` each score every size-th chunk of `referenceChunkPairs` pairs and add the
  /// values up (the others add 0, so the sum is exact). Every rank calls it together.
  /// `progress` hears the pairs scored so far over all ranks (estimated from this rank's
  /// share) and the seconds, about every `every` seconds. `stopping` is asked after each
  /// round of chunks, on every rank, and must give every rank the same answer (a collective
  /// decision): true abandons the scoring.
  /// - Returns: the pairs scored and the seconds it took; nil when abandoned (no table).
  public func scoreReference(
    every: Double = 2, progress: (_ scored: Int, _ seconds: Double) throws -> Void = { _, _ in },
    stopping: () throws -> Bool = { false }
  ) throws -> (pairs: Int, seconds: Double)? {
    let started = DispatchTime.now().uptimeNanoseconds
    func seconds() -> Double { Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9 }
    let (size, pairs, ranks) = (Self.referenceChunkPairs * 2, train.count / 2, communicator.size)
    var table = [Double](repeating: 0, count: train.count)
    let chunks = (train.count + size - 1) / size
    var reported = 0.0
    // Every rank runs the same rounds (some without a chunk in the last), so the stop
    // decisions pair up.
    for round in 0..<(chunks + ranks - 1) / ranks {
      let chunk = round * ranks + communicator.rank
      if chunk < chunks {
        let range = chunk * size..<min(train.count, (chunk + 1) * size)
        table.replaceSubrange(
          range, with: evaluator.referenceLosses(of: Array(train[range]), longest: longest))
      }
      if try stopping() { return nil }
      if seconds() - reported >= every {
        reported = seconds()
        try progress(min(pairs - 1, (round + 1) * ranks * Self.referenceChunkPairs), reported)
      }
    }
    if ranks > 1 { try communicator.allreduce(&table, .sum) }
    referenceTable = table
    return (pairs, seconds())
  }

  /// The reference's losses of `mine` (this rank's validation pairs, the same at every
  /// validation), scored at the first validation in the passes `preferenceSums` takes: later
  /// validations run only the policy's passes, to the same bits.
  func validationReference(_ mine: [Example]) -> [Double] {
    if let cached = validationReferenceLosses { return cached }
    let losses = evaluator.referenceLosses(of: mine, longest: mine.map(\.tokens.count).max() ?? 1)
    validationReferenceLosses = losses
    return losses
  }

  /// The reference's summed losses of `pass` (this update's examples) from `referenceTable`,
  /// in `pass` order; nil when there is no table.
  func referenceLosses(of pass: [Placed]) -> [Double]? {
    referenceTable.map { table in pass.map { table[$0.index] } }
  }
}
