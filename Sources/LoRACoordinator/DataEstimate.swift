import Foundation
import LoRATraining
import LoRAYAML

/// How many examples a data file holds and roughly how many tokens each has, for the
/// planner. ``measure(path:)`` guesses without a tokenizer (about 4 characters per token,
/// plus the end-of-sequence and ChatML markers); ``init(dataset:)`` takes exact counts
/// from a loaded dataset.
public struct DataEstimate: Codable, Equatable, Sendable {
  /// Examples in the file (extrapolated from the part read for a large file).
  public var examples: Int
  /// Tokens of up to 10,000 of its examples (a sample, before truncation).
  public var sampleTokens: [Int]

  public init(examples: Int, sampleTokens: [Int]) {
    self.examples = examples
    self.sampleTokens = sampleTokens
  }

  /// Exact counts from a tokenized dataset.
  public init(dataset: Dataset) {
    examples = dataset.examples.count
    sampleTokens = dataset.examples.prefix(10_000).map(\.tokens.count)
  }

  /// The mean tokens per sequence once sequences are cut at `maxSeqLen`; nil without a sample.
  public func meanTokens(maxSeqLen: Int) -> Double? {
    guard !sampleTokens.isEmpty else { return nil }
    return Double(sampleTokens.reduce(0) { $0 + min($1, maxSeqLen) }) / Double(sampleTokens.count)
  }

  /// Characters per token the guess assumes (English text with a byte-level BPE tokenizer).
  public static let charactersPerToken = 4.0

  /// Reads up to the first 16 MiB of a JSON Lines file and guesses each example's tokens.
  public static func measure(path: String) throws -> DataEstimate {
    guard let handle = FileHandle(forReadingAtPath: path) else {
      throw JobFileError(.missingFile, file: path, line: nil, keyPath: nil, "cannot read the data file")
    }
    defer { try? handle.close() }
    let limit = 16 << 20
    let data = (try? handle.read(upToCount: limit)) ?? Data()
    let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? data.count
    var lines = data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true)
    if data.count < size, !lines.isEmpty { lines.removeLast() }  // the last line may be cut
    var tokens: [Int] = []
    var counted = 0
    for line in lines {
      guard line.contains(where: { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\r") }) else { continue }
      counted += 1
      if tokens.count < 10_000 { tokens.append(guessTokens(Data(line))) }
    }
    let examples =
      data.count < size && !data.isEmpty
      ? Int((Double(counted) * Double(size) / Double(data.count)).rounded()) : counted
    return DataEstimate(examples: examples, sampleTokens: tokens)
  }

  /// One line's tokens: `input_ids` counted, strings by characters.
  static func guessTokens(_ line: Data) -> Int {
    func text(_ s: String) -> Int { Int((Double(s.count) / charactersPerToken).rounded(.up)) }
    guard let object = (try? JSONSerialization.jsonObject(with: line)) as? [String: Any] else {
      return text(String(decoding: line, as: UTF8.self))
    }
    if let ids = object["input_ids"] as? [Any] { return ids.count }
    if let messages = object["messages"] as? [[String: Any]] {
      // <|im_start|>role\n … <|im_end|>\n: about 5 tokens around each turn.
      return messages.reduce(0) { $0 + 5 + text($1["content"] as? String ?? "") }
    }
    let strings = ["text", "prompt", "completion"].compactMap { object[$0] as? String }
    return strings.reduce(1) { $0 + text($1) }
  }
}
