import LoRAComm
import LoRAKernels

extension FusedTrainer {
  /// Every rank's time per phase so far (`clock`, less this rank's `since`), in rank order:
  /// one all-reduce of ranks × phases seconds, which every rank of the group calls.
  public func rankPhases(since: PhaseTimes = PhaseTimes()) throws -> [PhaseTimes] {
    let width = Phase.allCases.count
    var table = [Double](repeating: 0, count: communicator.size * width)
    let own = (clock.times - since).seconds
    for i in 0..<width { table[communicator.rank * width + i] = own[i] }
    if communicator.size > 1 { try communicator.allreduce(&table, .sum) }
    return (0..<communicator.size).map { PhaseTimes(seconds: Array(table[$0 * width..<($0 + 1) * width])) }
  }
}
