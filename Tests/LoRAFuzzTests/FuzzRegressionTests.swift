import Foundation
import Testing

@testable import LoRAFuzz

/// Every fuzz target's seed corpus and every input that once found a bug
/// (Tests/LoRAFuzzTests/Corpus/TARGET/), replayed through the parser: each must end in a
/// parse or a clear refusal, never a crash.
@Suite struct FuzzRegressionTests {
  static let corpus = Bundle.module.url(forResource: "Corpus", withExtension: nil)!
  static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("../LoRAModelTests/Fixtures").standardized

  @Test(arguments: FuzzTarget.allCases) func everyCorpusInputIsParsedOrRefused(_ target: FuzzTarget) throws {
    let context = try FuzzContext(fixtures: Self.fixtures)
    let folder = Self.corpus.appendingPathComponent(target.rawValue)
    let inputs = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter {
      !$0.hasPrefix(".")
    }.sorted()
    let generated = try context.generatedSeeds(target)
    #expect(!inputs.isEmpty || !generated.isEmpty, "no seed inputs for \(target.rawValue)")
    for name in inputs {
      target.run(Array(try Data(contentsOf: folder.appendingPathComponent(name))), context)
    }
    for seed in generated { target.run(seed, context) }
  }
}
