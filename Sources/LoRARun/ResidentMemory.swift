import Foundation
import LoRAComm

/// The process's peak resident memory (Linux `VmHWM`).
public enum ResidentMemory {
  /// Every rank's peak resident memory and current proportional memory, in rank order, on
  /// every rank (collective).
  public static func perRank(_ comm: any Communicator) throws -> [(peak: Int, proportional: Int)] {
    var memory = [Double](repeating: 0, count: 2 * comm.size)
    memory[2 * comm.rank] = Double(peakBytes())
    memory[2 * comm.rank + 1] = Double(proportionalBytes())
    if comm.size > 1 { try comm.allreduce(&memory, .sum) }
    return (0..<comm.size).map { (Int(memory[2 * $0]), Int(memory[2 * $0 + 1])) }
  }

  /// The process's current proportional set size (Linux `Pss` in smaps_rollup): pages shared
  /// with other processes count as their share, so the ranks' values add up to the node's use.
  public static func proportionalBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/smaps_rollup", encoding: .utf8),
      let line = text.split(separator: "\n").first(where: { $0.hasPrefix("Pss:") })
    else { return 0 }
    return kilobytes(line) * 1024
  }

  public static func peakBytes() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
      let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") })
    else { return 0 }
    return kilobytes(line) * 1024
  }

  /// The number of a /proc line such as "VmHWM:\t  812345 kB" or, from 10 GB on,
  /// "VmHWM:\t10234567 kB" (no space: the field is tab-separated and space-padded).
  public static func kilobytes(_ line: Substring) -> Int {
    line.split(whereSeparator: { $0 == " " || $0 == "\t" }).compactMap { Int($0) }.first ?? 0
  }
}
