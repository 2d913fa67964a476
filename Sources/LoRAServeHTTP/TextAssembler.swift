import LoRAFormats

/// Turns generated token ids into text as they come: only whole UTF-8 characters are let
/// out, and a tail that could be the start of a stop string is held back until it is known
/// not to be one. When a stop string appears, the text before it is the last piece and the
/// stop string itself is never returned.
///
/// Stop tokens (eos, `<|im_end|>`) give no text.
struct TextAssembler {
  /// What one token added: text ready to send (possibly empty), and whether a stop string
  /// ended the generation.
  struct Step: Equatable {
    var text: String
    var stopped: Bool
  }

  let tokenizer: Tokenizer
  let stopStrings: [String]
  let stopTokens: Set<Int32>
  /// Every byte generated so far, and how many of them were let out.
  private(set) var bytes: [UInt8] = []
  private(set) var sent = 0
  private(set) var stopped = false

  init(tokenizer: Tokenizer, stopStrings: [String], stopTokens: Set<Int32>) {
    self.tokenizer = tokenizer
    self.stopStrings = stopStrings.filter { !$0.isEmpty }
    self.stopTokens = stopTokens
  }

  /// Adds `token`'s bytes; returns the text that may be sent now.
  mutating func add(_ token: Int32) -> Step {
    guard !stopped else { return Step(text: "", stopped: true) }
    if stopTokens.contains(token) { return Step(text: "", stopped: false) }
    bytes += tokenizer.bytes(of: token)
    let complete = Utf8Prefix.complete(bytes)
    let text = String(decoding: bytes[..<complete], as: UTF8.self)
    // Decoding whole characters keeps byte offsets: `text.utf8` is `bytes[..<complete]`.
    if let cut = firstStop(in: text) {
      stopped = true
      return Step(text: take(upTo: max(cut, sent)), stopped: true)
    }
    let safe = complete - heldBack(text)
    return Step(text: take(upTo: max(safe, sent)), stopped: false)
  }

  /// The rest once generation ended without a stop string: held-back text and any
  /// incomplete character (decoded with replacement characters).
  mutating func finish() -> String {
    guard !stopped else { return "" }
    return take(upTo: bytes.count)
  }

  /// Bytes `sent..<end` as text; moves `sent`.
  private mutating func take(upTo end: Int) -> String {
    guard end > sent else { return "" }
    defer { sent = end }
    return String(decoding: bytes[sent..<end], as: UTF8.self)
  }

  /// Byte offset of the earliest stop string in `text`.
  private func firstStop(in text: String) -> Int? {
    let haystack = Array(text.utf8)
    // A stop string can only begin where it could not have been seen before.
    let longest = stopStrings.map(\.utf8.count).max() ?? 0
    let from = max(0, sent - longest)
    var best: Int?
    for stop in stopStrings {
      let needle = Array(stop.utf8)
      guard needle.count <= haystack.count else { continue }
      var i = from
      while i + needle.count <= haystack.count {
        if haystack[i] == needle[0] && Array(haystack[i..<(i + needle.count)]) == needle {
          if best.map({ i < $0 }) ?? true { best = i }
          break
        }
        i += 1
      }
    }
    return best
  }

  /// How many trailing bytes of `text` are a proper prefix of some stop string.
  private func heldBack(_ text: String) -> Int {
    let tail = Array(text.utf8)
    var held = 0
    for stop in stopStrings {
      let needle = Array(stop.utf8)
      var k = min(needle.count - 1, tail.count)
      while k > held {
        if Array(tail[(tail.count - k)...]) == Array(needle[..<k]) {
          held = k
          break
        }
        k -= 1
      }
    }
    return held
  }
}

/// How many leading bytes form complete UTF-8 characters (streaming must not split one).
public enum Utf8Prefix {
  public static func complete(_ bytes: [UInt8]) -> Int {
    var end = bytes.count
    var i = bytes.count - 1
    var back = 0
    while i >= 0 && back < 4 && bytes[i] & 0xC0 == 0x80 {
      i -= 1
      back += 1
    }
    if i >= 0 {
      let lead = bytes[i]
      let needed = lead < 0x80 ? 1 : lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1
      if bytes.count - i < needed { end = i }
    }
    return end
  }
}
