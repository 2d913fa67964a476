import Foundation
import Testing

@testable import LoRACoordinator

/// A job file's precision keys: how the base is held and how attention multiplies.
@Suite struct JobFilePrecisionTests {
  /// `base_precision`: auto unless given; a value outside auto, bf16, f32 names its line.
  @Test func basePrecisionIsReadAndChecked() throws {
    let folder = try JobFolder()
    let adapters = "adapters: [{ name: a, data: data/a.jsonl }]\n"
    #expect(try folder.load("model: model.gguf\noutput: o\n" + adapters).basePrecision == .auto)
    #expect(
      try folder.load("model: model.gguf\nbase_precision: bf16\noutput: o\n" + adapters).basePrecision
        == .bf16)
    expectFailure(.invalidValue, line: 2, keyPath: "base_precision", mentions: ["auto, bf16, f32"]) {
      _ = try folder.load("model: model.gguf\nbase_precision: half\noutput: o\n" + adapters)
    }
  }

  /// `attention_precision`: auto unless given; a value outside auto, bf16, f32 names its line.
  @Test func attentionPrecisionIsReadAndChecked() throws {
    let folder = try JobFolder()
    let adapters = "adapters: [{ name: a, data: data/a.jsonl }]\n"
    #expect(try folder.load("model: model.gguf\noutput: o\n" + adapters).attentionPrecision == .auto)
    #expect(
      try folder.load("model: model.gguf\nattention_precision: f32\noutput: o\n" + adapters)
        .attentionPrecision == .f32)
    expectFailure(.invalidValue, line: 3, keyPath: "attention_precision", mentions: ["auto, bf16, f32"]) {
      _ = try folder.load("model: model.gguf\noutput: o\nattention_precision: fp16\n" + adapters)
    }
  }
}
