import Foundation
import Testing

@testable import LoRATraining

/// The settings type: its JSON form (unset values left out, lists written either way) and
/// the one table of range checks.
@Suite struct TrainingSettingsTests {
  @Test func unsetValuesAreLeftOutAndListsMayBeOneValue() throws {
    #expect(String(decoding: try JSONEncoder().encode(TrainingSettings()), as: UTF8.self) == "{}")
    let one = try JSONDecoder().decode(
      TrainingSettings.self, from: Data(#"{"targets": "all-linear", "layers": 3}"#.utf8))
    #expect(one.targets == ["all-linear"] && one.layers == [3])
    let many = try JSONDecoder().decode(
      TrainingSettings.self, from: Data(#"{"targets": ["q_proj", "v_proj"]}"#.utf8))
    #expect(many.targets == ["q_proj", "v_proj"] && many.layers == nil)
    let encoder = JSONEncoder()
    encoder.outputFormatting = .sortedKeys
    #expect(
      String(decoding: try encoder.encode(one), as: UTF8.self) == #"{"layers":[3],"targets":["all-linear"]}"#)
    #expect(throws: DecodingError.self) {
      try JSONDecoder().decode(TrainingSettings.self, from: Data(#"{"layers": {"a": 1}}"#.utf8))
    }
  }

  @Test func validationNamesTheKeyAndWhatWasExpected() throws {
    var s = TrainingSettings()
    try s.validate()
    let cases: [(WritableKeyPath<TrainingSettings, Int?>, Int, String)] = [
      (\.rank, 0, "rank: LoRA rank must be at least 1, got 0"),
      (\.maxSeqLen, 1, "max_seq_len: must be at least 2, got 1"),
      (\.checkpointEvery, -1, "checkpoint_every: must be 0 or more, got -1"),
      (\.keep, 0, "keep: must be at least 1, got 0"),
      (\.fullEvery, 0, "full_every: must be at least 1, got 0"),
    ]
    for (key, value, message) in cases {
      var bad = s
      bad[keyPath: key] = value
      #expect(throws: SettingsError.self) { try bad.validate() }
      do { try bad.validate() } catch { #expect(error.description == message) }
    }
    s.dropout = .nan
    #expect(throws: SettingsError(["dropout"], "must be in [0, 1), got nan")) { try s.validate() }
    s.dropout = nil
    s.loraplusLRRatio = 0
    #expect(
      throws: SettingsError(["loraplus_lr_ratio"], "must be a positive number (PEFT suggests 16), got 0.0")
    ) {
      try s.validate()
    }
    s.loraplusLRRatio = nil
    s.rankPattern = ["q_proj": 4, "v_proj": 0]
    #expect(throws: SettingsError(["rank_pattern", "v_proj"], "LoRA rank must be at least 1, got 0")) {
      try s.validate()
    }
    s.rankPattern = nil
    s.schedule = "exponential"
    #expect(
      throws: SettingsError(["schedule"], "schedule 'exponential' is not one of constant, linear, cosine")
    ) {
      try s.validate()
    }
    s.schedule = nil
    s.balance = "length"
    #expect(throws: SettingsError(["balance"], "'length' is not one of tokens, sequences")) {
      try s.validate()
    }
    s.balance = nil
    s.paddingFree = true
    s.promptTokens = 8
    #expect(
      throws: SettingsError(
        ["padding_free"],
        "applies to adapters without prompt or prefix tokens (their virtual tokens pass padded)"
      )
    ) {
      try s.validate()
    }
  }
}
