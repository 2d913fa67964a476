import Foundation
import LoRARun
import LoRAServeHTTP
import Testing

@testable import swift_lora_dist

/// `inspect` and `generate` through the built binary.
@Suite struct ModelCommandTests {
  static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("../LoRAModelTests/Fixtures").standardized.path
  static let defaultModel =
    (ProcessInfo.processInfo.environment["SWIFT_LORA_DIST_CACHE"]
      ?? (NSHomeDirectory() + "/.cache/swift-lora-dist"))
    + "/SmolLM2-135M-Instruct.Q4_1.gguf"

  @Test func inspectShowsArchitectureAndTensors() throws {
    let outcome = try CommandRunner.run(["inspect", Self.fixtures + "/tiny-qwen2/model.gguf", "--load"])
    #expect(outcome.status == 0, "\(outcome.errors)")
    #expect(
      outcome.output.contains("architecture: qwen2: 2 layers, width 32, 4 heads / 2 kv heads of 8, MLP 64"))
    #expect(outcome.output.contains("q/k/v biases"))
    #expect(outcome.output.contains("blk.0.attn_q.bias"))
    #expect(outcome.output.contains("tokenizer: none usable"))
    #expect(outcome.output.contains("loaded in"))
  }

  /// /proc's memory lines are tab-separated and space-padded: from 10 GB on there is no space.
  @Test func residentMemoryReadsProcLinesOfAnyWidth() {
    #expect(ResidentMemory.kilobytes("VmHWM:\t  812345 kB") == 812_345)
    #expect(ResidentMemory.kilobytes("VmHWM:\t10234567 kB") == 10_234_567)
    #expect(ResidentMemory.kilobytes("Pss:              123456 kB") == 123_456)
    #expect(ResidentMemory.peakBytes() > 0)
  }

  @Test func inspectOfAMissingFileNamesIt() throws {
    let outcome = try CommandRunner.run(["inspect", "/nonexistent/model.gguf"])
    #expect(outcome.status != 0)
    #expect(outcome.errors.contains("/nonexistent/model.gguf: cannot read: no such file or folder"))
  }

  @Test func generateNeedsExactlyOnePrompt() throws {
    let outcome = try CommandRunner.run(["generate", "--model", "m.gguf"])
    #expect(outcome.status != 0)
    #expect(outcome.errors.contains("give exactly one of --prompt and --chat"))
  }

  @Test func generateWithoutTokenizerSaysSo() throws {
    let outcome = try CommandRunner.run([
      "generate", "--model", Self.fixtures + "/tiny-tied/model.gguf", "--prompt", "hi",
    ])
    #expect(outcome.status != 0)
    #expect(outcome.errors.contains("has no tokenizer"))
  }

  @Test(
    .enabled(
      if: FileManager.default.fileExists(atPath: defaultModel), "the default model is not in the cache"))
  func generateContinuesGreedilyAndReportsSpeed() throws {
    let outcome = try CommandRunner.run([
      "generate", "--model", Self.defaultModel, "--prompt", "The capital of France is", "--max-tokens", "4",
      "--json",
    ])
    #expect(outcome.status == 0, "\(outcome.errors)")
    let result = try JSONDecoder().decode(GenerateResult.self, from: Data(outcome.output.utf8))
    #expect(result.text == " Paris.\n\n")
    #expect(result.promptIDs == [504, 3575, 282, 4649, 314])
    #expect(result.stats.generatedTokens == 4 && result.stats.promptTokensPerSecond > 0)
  }

  @Test(
    .enabled(
      if: FileManager.default.fileExists(atPath: defaultModel), "the default model is not in the cache"))
  func chatStopsAtTheEndOfTheAnswer() throws {
    let outcome = try CommandRunner.run([
      "generate", "--model", Self.defaultModel, "--chat", "Say hello.", "--max-tokens", "40", "--seed", "3",
      "--temperature", "0.7", "--top-p", "0.9",
    ])
    #expect(outcome.status == 0, "\(outcome.errors)")
    #expect(!outcome.output.contains("<|im_end|>"))
    #expect(outcome.errors.contains("tokens/s"))
    let again = try CommandRunner.run([
      "generate", "--model", Self.defaultModel, "--chat", "Say hello.", "--max-tokens", "40", "--seed", "3",
      "--temperature", "0.7", "--top-p", "0.9",
    ])
    #expect(again.output == outcome.output, "the same seed gives the same text")
  }
}

@Suite struct StreamingTests {
  @Test func holdsBackIncompleteCharacters() {
    let euro = Array("€".utf8)  // 3 bytes
    #expect(Utf8Prefix.complete(Array("ab".utf8)) == 2)
    #expect(Utf8Prefix.complete(Array("a".utf8) + euro.prefix(2)) == 1)
    #expect(Utf8Prefix.complete(Array("a".utf8) + euro) == 4)
    #expect(Utf8Prefix.complete([]) == 0)
  }
}
