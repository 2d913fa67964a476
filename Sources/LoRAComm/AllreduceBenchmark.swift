import Dispatch
import LoRAKernels

/// Latency and bandwidth of an in-place float-sum all-reduce of one size.
public struct AllreduceTiming: Sendable, Codable, Equatable {
  /// Payload per rank in bytes.
  public var bytes: Int
  public var iterations: Int
  /// Seconds per all-reduce: the mean over iterations of the slowest rank.
  public var seconds: Double
  /// Algorithm bandwidth, bytes / seconds, in GB/s.
  public var algorithmGBps: Double { Double(bytes) / seconds / 1e9 }
  /// Bus bandwidth (algorithm bandwidth × 2(n−1)/n): what each link carried, comparable
  /// across rank counts.
  public func busGBps(ranks: Int) -> Double { algorithmGBps * 2 * Double(ranks - 1) / Double(ranks) }
}

/// Times `allreduce(.sum)` over a range of payload sizes on every rank together.
public enum AllreduceBenchmark {
  /// Payloads from 4 B to `maximumBytes`, growing 4× each step.
  public static func sizes(upTo maximumBytes: Int) -> [Int] {
    Array(sequence(first: 4) { $0 * 4 }.prefix { $0 <= maximumBytes })
  }

  /// Measures each size for about `secondsPerSize` (3 to 1000 iterations, chosen the same
  /// on every rank). Every rank must call it with the same arguments.
  public static func measure(
    on comm: any Communicator, sizes: [Int], secondsPerSize: Double = 0.2
  ) throws -> [AllreduceTiming] {
    guard let largest = sizes.max() else { return [] }
    let buffer = Tensor(zeros: [max(1, largest / 4)])
    return try sizes.map { bytes in
      let t = buffer.view(offset: 0, shape: [max(1, bytes / 4)])
      try comm.allreduce(t, .sum)  // warm-up: connection set-up, registration
      var probe = [try timed { try comm.allreduce(t, .sum) }]
      try comm.allreduce(&probe, .max)
      let iterations = Int(min(1000, max(3, secondsPerSize / max(probe[0], 1e-7))))
      try comm.barrier()
      var seconds = [
        try timed { for _ in 0..<iterations { try comm.allreduce(t, .sum) } } / Double(iterations)
      ]
      try comm.allreduce(&seconds, .max)
      return AllreduceTiming(bytes: t.count * 4, iterations: iterations, seconds: seconds[0])
    }
  }

  private static func timed(_ body: () throws -> Void) rethrows -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
  }
}
