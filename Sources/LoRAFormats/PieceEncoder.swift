import Foundation

/// Splits ordinary text (no special tokens) into pieces and encodes each through the cache.
struct PieceEncoder {
  let tokenizer: Tokenizer
  private var ranges: [Range<Int>] = []
  private var bytes: [UInt8] = []

  init(tokenizer: Tokenizer) {
    self.tokenizer = tokenizer
  }

  mutating func encodeOrdinary(_ text: ArraySlice<Unicode.Scalar>, into output: inout [Int32]) {
    guard !text.isEmpty else { return }
    var scalars = Array(text)
    if tokenizer.normalizesNFC {
      var view = String.UnicodeScalarView()
      view.append(contentsOf: scalars)
      scalars = Array(String(view).precomposedStringWithCanonicalMapping.unicodeScalars)
    }
    let classes = scalars.map(ScalarClass.init)
    ranges.removeAll(keepingCapacity: true)
    tokenizer.preTokenizer.split(scalars, classes, 0..<scalars.count, into: &ranges)
    for range in ranges {
      bytes.removeAll(keepingCapacity: true)
      for scalar in scalars[range] { UTF8.encode(scalar) { bytes.append($0) } }
      if let cached = tokenizer.cache.lookup(bytes) {
        output.append(contentsOf: cached)
        continue
      }
      let start = output.count
      tokenizer.encodePiece(bytes, into: &output)
      tokenizer.cache.store(bytes, Array(output[start...]))
    }
  }
}
