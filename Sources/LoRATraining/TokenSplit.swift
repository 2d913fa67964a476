/// Token balancing's search (``BatchBalance/tokens``): splits a batch's units over ranks so
/// that the slowest rank's work — its micro-batches as they will run, each padded to its
/// longest unit — is as small as it can find. First greedily (units longest first, each to
/// the rank whose work it raises least), then by moving or swapping units between the
/// busiest rank and the others while that lowers the busiest rank's work. Deterministic:
/// every rank computes the same split.
struct TokenSplit {
  let units: [BatchBalance.Unit]
  let microBatch: Int
  let cost: SequenceCost

  /// Swaps are tried while the batch has at most this many units (moves always), and the
  /// search stops after this many improvements: it costs well under a millisecond a step.
  static let swapLimit = 128
  static let improvementLimit = 64

  /// `mine` in running order: longest first, ties by batch order.
  func ordered(_ mine: [Int]) -> [Int] {
    mine.sorted { units[$0].longest != units[$1].longest ? units[$0].longest > units[$1].longest : $0 < $1 }
  }

  /// The work of running `mine` (in running order) as micro-batches of `microBatch` units.
  func load(_ mine: [Int]) -> Double {
    var total = Double((mine.count + microBatch - 1) / microBatch) * cost.perPass
    var start = 0
    while start < mine.count {
      let batch = mine[start..<min(start + microBatch, mine.count)]
      let length = Batch.bucketLength(units[batch.first!].longest, longest: .max)
      total += cost.of(
        sequences: batch.reduce(0) { $0 + units[$1].lengths.count }, paddedTo: length,
        trained: batch.reduce(0) { $0 + units[$1].trained })
      start += microBatch
    }
    return total
  }

  /// Each rank's units, in running order.
  func split(ranks: Int) -> [[Int]] {
    var result = greedy(ranks: ranks)
    var loads = result.map(load)
    for _ in 0..<Self.improvementLimit {
      guard let better = improvement(result, loads) else { break }
      for (rank, mine) in better {
        result[rank] = mine
        loads[rank] = load(mine)
      }
    }
    return result
  }

  /// Longest first, each unit to the rank whose work it raises least (ties: the lower rank):
  /// it joins that rank's open micro-batch (padded to its first unit) or opens the next.
  func greedy(ranks: Int) -> [[Int]] {
    var load = [Double](repeating: 0, count: ranks)
    var padded = [Int](repeating: 0, count: ranks)
    var result = [[Int]](repeating: [], count: ranks)
    for unit in ordered(Array(units.indices)) {
      let u = units[unit]
      func added(_ r: Int) -> (work: Double, length: Int) {
        let opens = result[r].count % microBatch == 0
        let length = opens ? Batch.bucketLength(u.longest, longest: .max) : padded[r]
        let work = cost.of(sequences: u.lengths.count, paddedTo: length, trained: u.trained)
        return (work + (opens ? cost.perPass : 0), length)
      }
      let rank = (0..<ranks).min {
        let (a, b) = (load[$0] + added($0).work, load[$1] + added($1).work)
        return a != b ? a < b : $0 < $1
      }!
      let (work, length) = added(rank)
      result[rank].append(unit)
      load[rank] += work
      padded[rank] = length
    }
    return result
  }

  /// The best move of one unit off the busiest rank, or swap of one of its units with
  /// another rank's, that lowers the largest work; nil when none does.
  func improvement(_ result: [[Int]], _ loads: [Double]) -> [(Int, [Int])]? {
    let worst = loads.indices.max { loads[$0] != loads[$1] ? loads[$0] < loads[$1] : $0 > $1 }!
    let current = loads[worst]
    var best: (makespan: Double, change: [(Int, [Int])])?
    // The largest work off the two ranks a change touches: the two largest besides `worst`.
    let others = loads.indices.filter { $0 != worst }.sorted { loads[$0] > loads[$1] }
    func consider(_ other: Int, _ mine: [Int], _ theirs: [Int]) {
      let rest = others.first { $0 != other }.map { loads[$0] } ?? 0
      let makespan = max(rest, load(mine), load(theirs))
      if makespan < (best?.makespan ?? current) * (1 - 1e-9) {
        best = (makespan, [(worst, mine), (other, theirs)])
      }
    }
    for i in result[worst].indices {
      var mine = result[worst]
      let unit = mine.remove(at: i)
      for other in loads.indices where other != worst {
        consider(other, mine, ordered(result[other] + [unit]))
        guard units.count <= Self.swapLimit else { continue }
        for j in result[other].indices {
          var theirs = result[other]
          let swapped = theirs.remove(at: j)
          consider(other, ordered(mine + [swapped]), ordered(theirs + [unit]))
        }
      }
    }
    return best?.change
  }
}
