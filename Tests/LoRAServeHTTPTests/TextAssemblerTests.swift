import Foundation
import LoRAFormats
import Testing

@testable import LoRAServeHTTP

/// Stop strings and UTF-8 with SmolLM2's real tokenizer (LoRAFormatsTests' fixture).
struct TextAssemblerTests {
  static let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("LoRAFormatsTests/Fixtures/tokenizer-smollm2.json")

  func run(_ text: String, stops: [String], stopTokens: Set<Int32> = []) throws -> (
    pieces: [String], stopped: Bool
  ) {
    let tokenizer = try Tokenizer(tokenizerJSON: Self.url)
    var assembler = TextAssembler(tokenizer: tokenizer, stopStrings: stops, stopTokens: stopTokens)
    var pieces: [String] = []
    for id in tokenizer.encode(text, parseSpecial: false) {
      let step = assembler.add(id)
      if !step.text.isEmpty { pieces.append(step.text) }
      if step.stopped { return (pieces, true) }
    }
    let rest = assembler.finish()
    if !rest.isEmpty { pieces.append(rest) }
    return (pieces, false)
  }

  @Test func withoutStopsTheTextIsTheDecodedText() throws {
    let text = "Grüße, 世界! 🎉 done"
    let (pieces, stopped) = try run(text, stops: [])
    #expect(pieces.joined() == text && !stopped)
  }

  @Test func stopStringEndsBeforeItAndIsNotReturned() throws {
    let (pieces, stopped) = try run("The answer is 42.\nQuestion: next", stops: ["\nQuestion:"])
    #expect(stopped)
    #expect(pieces.joined() == "The answer is 42.")
    #expect(pieces.allSatisfy { !$0.contains("\n") })
  }

  @Test func aStopStringInsideOneTokenCutsIt() throws {
    let (pieces, stopped) = try run("hello world", stops: ["lo w"])
    #expect(stopped && pieces.joined() == "hel")
  }

  @Test func aHeldBackPrefixThatIsNotAStopIsReleased() throws {
    let (pieces, stopped) = try run("a## b", stops: ["###"])
    #expect(!stopped && pieces.joined() == "a## b")
  }

  @Test func earliestOfSeveralStopsWins() throws {
    let (pieces, stopped) = try run("one two three", stops: ["three", "two"])
    #expect(stopped && pieces.joined() == "one ")
  }

  @Test func stopTokensGiveNoText() throws {
    let tokenizer = try Tokenizer(tokenizerJSON: Self.url)
    let end = try #require(tokenizer.id(of: "<|im_end|>"))
    var assembler = TextAssembler(tokenizer: tokenizer, stopStrings: [], stopTokens: [end])
    #expect(assembler.add(end).text.isEmpty)
    #expect(assembler.finish().isEmpty)
  }

  @Test func utf8PrefixHoldsBackPartialCharacters() {
    let bytes = Array("é".utf8)
    #expect(Utf8Prefix.complete([0x41] + bytes.prefix(1)) == 1)
    #expect(Utf8Prefix.complete([0x41] + bytes) == 3)
  }
}
