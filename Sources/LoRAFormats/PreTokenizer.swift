/// How text is cut into pieces before byte-level BPE runs on each piece.
///
/// Every mode is a hand-written port of the regular expression it names (after llama.cpp's
/// `unicode_regex_split_custom_gpt2` and `_llama3`), working on Unicode scalars:
/// `\p{L}` is the general categories Lu Ll Lt Lm Lo, `\p{N}` is Nd Nl No, and `\s` is the
/// Unicode `White_Space` property. Combining marks are neither letters nor numbers.
public enum PreTokenizer: Sendable, Equatable {
  /// GPT-2: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
  case gpt2
  /// Every `\p{N}` scalar becomes a piece of its own, then `gpt2` splits the text between them
  /// (SmolLM2, StarCoder; llama.cpp pre-tokenizer types "smollm", "starcoder", "refact",
  /// "codeshell"; Hugging Face `Digits(individual_digits: true)` then `ByteLevel`).
  case gpt2Digits
  /// Llama-3: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|`
  /// ` ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`.
  case llama3
  /// Qwen2: the Llama-3 expression with single digits, `\p{N}`, instead of `\p{N}{1,3}`.
  case qwen2

  /// The mode for a GGUF `tokenizer.ggml.pre` value (e.g. "smollm", "gpt2", "default",
  /// "llama-bpe", "llama3", "qwen2", "starcoder"); nil if the name is unknown.
  ///
  /// "default" (what converters write when they do not recognise a tokenizer) is read as
  /// `gpt2`, the expression GPT-2-style byte-level vocabularies were trained with.
  public init?(ggufName: String) {
    switch ggufName {
    case "gpt2", "gpt-2", "default", "phi-2", "roberta-bpe": self = .gpt2
    case "smollm", "starcoder", "refact", "codeshell": self = .gpt2Digits
    case "llama3", "llama-v3", "llama-bpe", "falcon3": self = .llama3
    case "qwen2", "deepseek-r1-qwen": self = .qwen2
    default: return nil
    }
  }

  /// Cuts `text` into the pieces BPE sees, in order; joined they give back `text`.
  public func split(_ text: String) -> [String] {
    let scalars = Array(text.unicodeScalars)
    let classes = scalars.map(ScalarClass.init)
    var ranges: [Range<Int>] = []
    split(scalars, classes, 0..<scalars.count, into: &ranges)
    return ranges.map { range in
      var piece = String.UnicodeScalarView()
      piece.append(contentsOf: scalars[range])
      return String(piece)
    }
  }

  /// Appends the pieces of `scalars[range]` to `pieces` as index ranges into `scalars`.
  /// `classes[i]` must be `ScalarClass(scalars[i])`.
  func split(
    _ scalars: [Unicode.Scalar], _ classes: [ScalarClass], _ range: Range<Int>,
    into pieces: inout [Range<Int>]
  ) {
    var splitter = Splitter(scalars: scalars, classes: classes, range: range)
    switch self {
    case .gpt2:
      splitter.gpt2(range)
    case .gpt2Digits:
      var start = range.lowerBound
      for i in range where classes[i] == .number {
        splitter.gpt2(start..<i)
        splitter.emit(i..<(i + 1))
        start = i + 1
      }
      splitter.gpt2(start..<range.upperBound)
    case .llama3:
      splitter.llama3(range, maxDigits: 3)
    case .qwen2:
      splitter.llama3(range, maxDigits: 1)
    }
    pieces.append(contentsOf: splitter.pieces)
  }
}

/// The three scalar classes the split expressions test for; everything else is `other`.
enum ScalarClass: UInt8, Sendable {
  /// `\p{L}`: general categories Lu, Ll, Lt, Lm, Lo.
  case letter
  /// `\p{N}`: general categories Nd, Nl, No.
  case number
  /// `\s`: the Unicode `White_Space` property.
  case whitespace
  /// `[^\s\p{L}\p{N}]`: punctuation, symbols, marks, controls, unassigned.
  case other

  init(_ scalar: Unicode.Scalar) {
    let value = scalar.value
    if value < 0x80 {
      switch value {
      case 0x41...0x5A, 0x61...0x7A: self = .letter
      case 0x30...0x39: self = .number
      case 0x09...0x0D, 0x20: self = .whitespace
      default: self = .other
      }
      return
    }
    let properties = scalar.properties
    if properties.isWhitespace {
      self = .whitespace
      return
    }
    switch properties.generalCategory {
    case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
      self = .letter
    case .decimalNumber, .letterNumber, .otherNumber:
      self = .number
    default:
      self = .other
    }
  }
}

/// One pass of a split expression over a range of scalars, collecting piece ranges.
private struct Splitter {
  let scalars: [Unicode.Scalar]
  let classes: [ScalarClass]
  /// The piece ranges found so far.
  var pieces: [Range<Int>] = []
  /// Where the next piece starts.
  private var start: Int
  /// The end of the range being split; positions at or past it have no class.
  private var end: Int

  init(scalars: [Unicode.Scalar], classes: [ScalarClass], range: Range<Int>) {
    self.scalars = scalars
    self.classes = classes
    self.start = range.lowerBound
    self.end = range.upperBound
  }

  mutating func emit(_ range: Range<Int>) {
    if !range.isEmpty { pieces.append(range) }
  }

  /// Ends the current piece at `position`.
  private mutating func cut(at position: Int) {
    emit(start..<position)
    start = position
  }

  private func classAt(_ position: Int) -> ScalarClass? {
    position < end ? classes[position] : nil
  }

  private func valueAt(_ position: Int) -> UInt32? {
    position < end ? scalars[position].value : nil
  }

  /// The length of a contraction (`'s 't 're 've 'm 'll 'd`) starting at `position`, or 0.
  private func contractionLength(at position: Int, caseInsensitive: Bool) -> Int {
    guard valueAt(position) == 0x27, var first = valueAt(position + 1) else { return 0 }
    if caseInsensitive { first = lowercased(first) }
    switch first {
    case 0x73, 0x74, 0x6D, 0x64: return 2  // s t m d
    default: break
    }
    guard var second = valueAt(position + 2) else { return 0 }
    if caseInsensitive { second = lowercased(second) }
    switch (first, second) {
    case (0x72, 0x65), (0x76, 0x65), (0x6C, 0x6C): return 3  // re ve ll
    default: return 0
    }
  }

  /// ASCII lowercase, plus LATIN SMALL LETTER LONG S, which case-folds to "s" in `(?i:…)`.
  private func lowercased(_ value: UInt32) -> UInt32 {
    switch value {
    case 0x41...0x5A: return value + 0x20
    case 0x17F: return 0x73
    default: return value
    }
  }

  /// `\s+(?!\S)|\s+` at `position`, which must be whitespace: a run followed by more text
  /// leaves its last scalar for the next piece.
  private mutating func whitespaceRun(at position: Int) -> Int {
    var count = 0
    while classAt(position + count) == .whitespace { count += 1 }
    if count > 1 && position + count < end { return position + count - 1 }
    return position + max(count, 1)
  }

  mutating func gpt2(_ range: Range<Int>) {
    start = range.lowerBound
    end = range.upperBound
    var position = range.lowerBound
    while position < end {
      let contraction = contractionLength(at: position, caseInsensitive: false)
      if contraction > 0 {
        position += contraction
        cut(at: position)
        continue
      }
      let leadingSpace = scalars[position].value == 0x20
      let body = leadingSpace ? classAt(position + 1) : classes[position]
      if let body, body != .whitespace {
        // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`
        position += leadingSpace ? 1 : 0
        while classAt(position) == body { position += 1 }
        cut(at: position)
        continue
      }
      position = whitespaceRun(at: position)
      cut(at: position)
    }
  }

  mutating func llama3(_ range: Range<Int>, maxDigits: Int) {
    start = range.lowerBound
    end = range.upperBound
    var position = range.lowerBound
    while position < end {
      let contraction = contractionLength(at: position, caseInsensitive: true)
      if contraction > 0 {
        position += contraction
        cut(at: position)
        continue
      }
      let value = scalars[position].value
      let kind = classes[position]
      let isNewline = value == 0x0D || value == 0x0A
      // `[^\r\n\p{L}\p{N}]?\p{L}+`
      if !isNewline && kind != .number && (kind == .letter || classAt(position + 1) == .letter) {
        position += 1
        while classAt(position) == .letter { position += 1 }
        cut(at: position)
        continue
      }
      // `\p{N}{1,maxDigits}`
      if kind == .number {
        var digits = 0
        while classAt(position) == .number {
          position += 1
          digits += 1
          if digits == maxDigits {
            cut(at: position)
            digits = 0
          }
        }
        cut(at: position)
        continue
      }
      // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
      let leadingSpace = value == 0x20
      if (leadingSpace ? classAt(position + 1) : kind) == .other {
        position += leadingSpace ? 1 : 0
        while classAt(position) == .other { position += 1 }
        while let next = valueAt(position), next == 0x0D || next == 0x0A { position += 1 }
        cut(at: position)
        continue
      }
      // `\s*[\r\n]+`: up to and including the last newline of the whitespace run
      var count = 0
      var afterLastNewline: Int?
      while classAt(position + count) == .whitespace {
        let next = scalars[position + count].value
        if next == 0x0D || next == 0x0A { afterLastNewline = position + count + 1 }
        count += 1
      }
      if let afterLastNewline {
        position = afterLastNewline
        cut(at: position)
        continue
      }
      position = whitespaceRun(at: position)
      cut(at: position)
    }
  }
}
