/// Token balancing's search (``BatchBalance/tokens``): splits a batch's units over ranks so
/// that the slowest rank's work — its micro-batches as they will run, each padded to its
/// longest unit — is as small as it can find. First greedily (units longest first, each to
/// the rank whose work it raises least), then by moving or swapping units between the
/// busiest rank and the others while that lowers the busiest rank's work. Deterministic:
/// every rank computes the same split.
struct TokenSplit {
  let units: [BatchBalance.Unit]
  /// Padded rows a pass may hold (`BatchBalance.passes`).
  let rows: Int
  /// Rows (or keys) a virtual-token adapter adds to each sequence.
  let extra: Int
  /// Padding-free passes: a pass's sequences end to end, costed by their tokens.
  var packed = false
  /// The run's longest sequence: no padded row is longer.
  var longest = Int.max
  let cost: SequenceCost

  /// Swaps are tried while the batch has at most this many units (moves always), and the
  /// search stops after this many improvements: it costs well under a millisecond a step.
  static let swapLimit = 128
  static let improvementLimit = 64

  /// `mine` in running order: longest first, ties by batch order.
  func ordered(_ mine: [Int]) -> [Int] {
    mine.sorted { units[$0].longest != units[$1].longest ? units[$0].longest > units[$1].longest : $0 < $1 }
  }

  /// The work of running `mine` (in running order) in its passes.
  func load(_ mine: [Int]) -> Double {
    let shapes = mine.map {
      (longest: units[$0].longest, sequences: units[$0].lengths.count, tokens: units[$0].lengths.reduce(0, +))
    }
    return BatchBalance.tokens.passes(
      shapes, microBatch: 1, rows: rows, extra: extra, packed: packed, longest: longest
    ).reduce(
      0
    ) {
      total, pass in
      let batch = mine[pass]
      let length = Batch.bucketLength(units[batch.first!].longest, longest: longest)
      if packed {
        let lengths = batch.flatMap { units[$0].lengths }
        return total + cost.perPass
          + cost.ofPacked(
            rows: 1, length: Batch.bucketLength(lengths.reduce(0, +), longest: .max), lengths: lengths,
            trained: batch.reduce(0) { $0 + units[$1].trained })
      }
      return total + cost.perPass
        + cost.of(
          sequences: batch.reduce(0) { $0 + units[$1].lengths.count }, paddedTo: length,
          trained: batch.reduce(0) { $0 + units[$1].trained })
    }
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
  /// it joins that rank's open pass (padded to its first unit) while the rows fit, or opens
  /// the next.
  func greedy(ranks: Int) -> [[Int]] {
    var load = [Double](repeating: 0, count: ranks)
    // Each rank's open pass: its padded length (packed: its tokens) and sequences (0: none open).
    var open = [(length: Int, sequences: Int)](repeating: (0, 0), count: ranks)
    var result = [[Int]](repeating: [], count: ranks)
    for unit in ordered(Array(units.indices)) {
      let u = units[unit]
      let sequences = u.lengths.count
      // Packed: the open pass's tokens grow by the unit's (rows of 8).
      func addedPacked(_ r: Int) -> (work: Double, pass: (length: Int, sequences: Int)) {
        let n = u.lengths.reduce(0, +)
        let joins = open[r].sequences > 0 && Batch.bucketLength(open[r].length + n, longest: .max) <= rows
        let before = joins ? open[r].length : 0
        let grown =
          Batch.bucketLength(before + n, longest: .max)
          - (joins ? Batch.bucketLength(before, longest: .max) : 0)
        let work = cost.ofPacked(rows: 1, length: grown, lengths: u.lengths, trained: u.trained)
        return (work + (joins ? 0 : cost.perPass), (before + n, (joins ? open[r].sequences : 0) + sequences))
      }
      func added(_ r: Int) -> (work: Double, pass: (length: Int, sequences: Int)) {
        if packed { return addedPacked(r) }
        let joins =
          open[r].sequences > 0 && (open[r].sequences + sequences) * (open[r].length + extra) <= rows
        let length = joins ? open[r].length : Batch.bucketLength(u.longest, longest: longest)
        let work = cost.of(sequences: sequences, paddedTo: length, trained: u.trained)
        return (work + (joins ? 0 : cost.perPass), (length, (joins ? open[r].sequences : 0) + sequences))
      }
      let rank = (0..<ranks).min {
        let (a, b) = (load[$0] + added($0).work, load[$1] + added($1).work)
        return a != b ? a < b : $0 < $1
      }!
      let (work, pass) = added(rank)
      result[rank].append(unit)
      load[rank] += work
      open[rank] = pass
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
