import Foundation
import LoRAFormats
import Testing

@testable import LoRATraining

/// Conversations in the SentencePiece families' chat layouts: the whole text encoded once (the
/// ids `apply_chat_template` gives, checked in ChatFormatTests), what the assistant says
/// trained.
@Suite struct ChatDataTests {
  static let conversation = [
    ChatMessage(role: "system", content: "Be brief."),
    ChatMessage(role: "user", content: "Capital of France?"),
    ChatMessage(role: "assistant", content: " Paris.\n"),
    ChatMessage(role: "user", content: "And of Spain?"),
    ChatMessage(role: "assistant", content: "Madrid."),
  ]

  @Test func llama2TrainsEachAnswerAndItsEOS() throws {
    let tokenizer = try llama2Tokenizer()
    let folder = try DataTestFolder()
    let path = try folder.write([try line(Self.conversation)])
    let example = try #require(
      try DatasetLoader.load(path: path, tokenizer: tokenizer, options: DatasetOptions(chatFormat: .llama2))
        .examples.first)
    let text = try ChatFormat.llama2.render(Self.conversation, addGenerationPrompt: false, for: tokenizer)
      .text
    #expect(
      text.hasPrefix("<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nCapital of France? [/INST] Paris. </s><s>"))
    #expect(example.tokens == tokenizer.encode(text, withBOS: false))
    #expect(example.tokens.filter { $0 == 1 }.count == 2, "one BOS per user turn, none added")
    #expect(trainedRuns(example, tokenizer) == ["Paris. </s>", "Madrid. </s>"])
    // The "[/INST]" before each answer is not trained, nor the template's space after it
    // (a token of its own in this tiny vocabulary).
    let first = try #require(example.trained.firstIndex(of: true))
    #expect(tokenizer.decode(Array(example.tokens[..<first])).hasSuffix("[/INST] "))

    let all = try #require(
      try DatasetLoader.load(
        path: path, tokenizer: tokenizer, options: DatasetOptions(trainOnPrompt: true, chatFormat: .llama2)
      ).examples.first)
    #expect(all.tokens == example.tokens && all.trainedCount == example.tokens.count - 1)
  }

  @Test func mistralAndZephyrTrainTheAnswers() throws {
    let tokenizer = try llama2Tokenizer()
    let folder = try DataTestFolder()
    let turns = Array(Self.conversation.dropFirst())
    let path = try folder.write([try line(turns)])
    let mistral = try #require(
      try DatasetLoader.load(path: path, tokenizer: tokenizer, options: DatasetOptions(chatFormat: .mistral))
        .examples.first)
    #expect(trainedRuns(mistral, tokenizer) == ["Paris.\n</s>", "Madrid.</s>"])
    let zephyr = try #require(
      try DatasetLoader.load(path: path, tokenizer: tokenizer, options: DatasetOptions(chatFormat: .zephyr))
        .examples.first)
    #expect(trainedRuns(zephyr, tokenizer) == ["Paris.\n</s>", "Madrid.</s>"])
  }

  @Test func theModelsTemplatePicksTheLayout() throws {
    let tokenizer = try llama2Tokenizer()
    let template = "{% for message in messages %}{{ bos_token + '[INST] ' }}<<SYS>>{% endfor %}"
    #expect(
      DatasetOptions().resolvingChatFormat(template: template, tokenizer: tokenizer).chatFormat == .llama2)
    #expect(
      DatasetOptions(chatFormat: .zephyr).resolvingChatFormat(template: template, tokenizer: tokenizer)
        .chatFormat == .zephyr)
    #expect(DatasetOptions().resolvingChatFormat(template: "{{ x }}", tokenizer: tokenizer).chatFormat == nil)
  }

  @Test func aConversationTheLayoutCannotWriteIsABadLine() throws {
    let tokenizer = try llama2Tokenizer()
    let folder = try DataTestFolder()
    let path = try folder.write([try line(Self.conversation)])
    #expect(
      throws: DataError.badLine(
        file: path, line: 1,
        message:
          #"messages[0]: role "system" is not written by the mistral chat template (it takes "user" and "assistant")"#
      )
    ) {
      try DatasetLoader.load(path: path, tokenizer: tokenizer, options: DatasetOptions(chatFormat: .mistral))
    }
    // No template the tool knows and no ChatML markers in the vocabulary: say what to set.
    #expect(
      throws: DataError.invalidOption(
        "the model's chat template is not one this tool renders (chatml, llama2, mistral, zephyr, llama3); "
          + "set the dataset's chat_format to the one the model was trained with")
    ) {
      try DatasetLoader.load(path: path, tokenizer: tokenizer, options: DatasetOptions())
    }
  }

  private func line(_ messages: [ChatMessage]) throws -> String {
    String(decoding: try JSONEncoder().encode(["messages": messages]), as: UTF8.self)
  }
}

/// The tiny Llama 2 layout tokenizer (byte fallback; "<s>" 1, "</s>" 2) of the formats tests.
private func llama2Tokenizer() throws -> Tokenizer {
  let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("../LoRAFormatsTests/Fixtures/tokenizer-spm-llama2.json").standardizedFileURL
  let folder = try DataTestFolder()
  let link = folder.url.appendingPathComponent("tokenizer.json")
  try FileManager.default.createSymbolicLink(at: link, withDestinationURL: fixture)
  try Data(#"{"bos_token": "<s>", "eos_token": "</s>"}"#.utf8)
    .write(to: folder.url.appendingPathComponent("tokenizer_config.json"))
  let tokenizer = try Tokenizer(tokenizerJSON: link)
  #expect(tokenizer.bosID == 1 && tokenizer.eosID == 2)
  return tokenizer
}
