import Foundation
import LoRAFormats
import Testing

@testable import LoRATraining

/// DPO's preference data in TRL's format: plain and conversational pairs, only the responses
/// trained, and every bad line named.
@Suite struct PreferenceDataTests {
  @Test func plainPairsTrainEachResponseAndEOS() throws {
    let tokenizer = try smolLM2()
    let folder = try DataTestFolder()
    let path = try folder.write(
      #"{"prompt": "Q: 2+2?\nA:", "chosen": " 4", "rejected": " 5", "id": 7}"#,
      #"{"prompt": "Say hi.", "chosen": " Hi!", "rejected": " No."}"#)
    let data = try PreferenceLoader.load(path: path, tokenizer: tokenizer, options: DatasetOptions())
    #expect(data.pairs.count == 2 && data.stats.examples == 2 && data.stats.lines == 2)
    let prompt = tokenizer.encode("Q: 2+2?\nA:")
    let pair = data.pairs[0]
    #expect(pair.chosen.tokens == prompt + tokenizer.encode(" 4", withBOS: false) + [2])
    #expect(pair.rejected.tokens == prompt + tokenizer.encode(" 5", withBOS: false) + [2])
    #expect(trainedRuns(pair.chosen, tokenizer) == [" 4<|im_end|>"])
    #expect(trainedRuns(pair.rejected, tokenizer) == [" 5<|im_end|>"])
  }

  @Test func conversationalPairsTrainOnlyTheResponseTurns() throws {
    let tokenizer = try smolLM2()
    let folder = try DataTestFolder()
    // A prompt with an earlier assistant turn: that one is not trained.
    let line = """
      {"prompt": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
                  {"role": "user", "content": "Capital of France?"}],
       "chosen": [{"role": "assistant", "content": "Paris."}],
       "rejected": [{"role": "assistant", "content": "Rome."}]}
      """.replacingOccurrences(of: "\n", with: " ")
    let path = try folder.write(line)
    let pair = try #require(
      try PreferenceLoader.load(
        path: path, tokenizer: tokenizer, options: DatasetOptions(chatFormat: .chatML)
      )
      .pairs.first)
    #expect(trainedRuns(pair.chosen, tokenizer) == ["Paris.<|im_end|>"])
    #expect(trainedRuns(pair.rejected, tokenizer) == ["Rome.<|im_end|>"])
    // Both start with the same prompt, up to the first trained token.
    let start = try #require(pair.chosen.trained.firstIndex(of: true))
    #expect(pair.rejected.trained.firstIndex(of: true) == start)
    #expect(Array(pair.chosen.tokens.prefix(start)) == Array(pair.rejected.tokens.prefix(start)))
  }

  @Test func badLinesAreNamedOrSkipped() throws {
    let tokenizer = try smolLM2()
    let folder = try DataTestFolder()
    let cases: [(String, String)] = [
      (#"{"prompt": "p", "chosen": "a"}"#, #"missing key "rejected""#),
      (#"{"prompt": "p", "chosen": "a", "rejected": "a"}"#, #""chosen" and "rejected" are the same"#),
      (#"{"prompt": "p", "chosen": "a", "rejected": "b", "score": 1}"#, #"unknown key "score""#),
      (#"{"prompt": "p", "chosen": 3, "rejected": "b"}"#, #"key "chosen" must be a string"#),
      (
        #"{"prompt": [{"role": "user", "content": "p"}], "chosen": "a", "rejected": "b"}"#,
        #"key "chosen" must be a list of assistant messages"#
      ),
      (
        #"{"prompt": [{"role": "user", "content": "p"}], "chosen": [{"role": "user", "content": "a"}], "rejected": [{"role": "assistant", "content": "b"}]}"#,
        #"chosen[0]: a response is assistant messages, found role "user""#
      ),
    ]
    for (line, message) in cases {
      let path = try folder.write(#"{"prompt": "ok", "chosen": " yes", "rejected": " no"}"#, line)
      #expect {
        try PreferenceLoader.load(
          path: path, tokenizer: tokenizer, options: DatasetOptions(chatFormat: .chatML))
      } throws: { error in
        guard case .badLine(let file, 2, let text) = error as? DataError else { return false }
        return file == path && text.contains(message)
      }
      let skipped = try PreferenceLoader.load(
        path: path, tokenizer: tokenizer, options: DatasetOptions(skipBadLines: true, chatFormat: .chatML))
      #expect(skipped.pairs.count == 1 && skipped.stats.skippedLines == 1)
    }
  }

  /// A prompt that fills max_seq_len leaves no response token: named, not trained on silently.
  @Test func aPromptThatFillsTheContextIsNamed() throws {
    let tokenizer = try smolLM2()
    let folder = try DataTestFolder()
    let long = String(repeating: "word ", count: 40)
    let path = try folder.write(
      #"{"prompt": "\#(long)", "chosen": " yes", "rejected": " no"}"#,
      #"{"prompt": "short", "chosen": " yes", "rejected": " no"}"#)
    let options = DatasetOptions(maxSequenceLength: 16)
    #expect {
      try PreferenceLoader.load(path: path, tokenizer: tokenizer, options: options)
    } throws: { "\($0)".contains("\(path):1: the prompt fills max_seq_len (16 tokens)") }
    var skipping = options
    skipping.skipBadLines = true
    let data = try PreferenceLoader.load(path: path, tokenizer: tokenizer, options: skipping)
    #expect(data.pairs.count == 1 && data.stats.skippedLines == 1)
  }
}
