import Foundation
import Testing

@testable import LoRAFormats

/// Every chat layout against Hugging Face's `apply_chat_template` on the templates the model
/// families ship (`Fixtures/chat-templates.json`, from scripts/make_chat_fixtures.py).
@Suite struct ChatFormatTests {
  @Test func templatesAreDetected() throws {
    let fixture = try ChatFixture.load()
    for (name, template) in fixture.templates {
      #expect(ChatFormat.detect(template: template) == ChatFormat(rawValue: name), "\(name)")
    }
    #expect(ChatFormat.detect(template: "{{ messages }}") == nil)
    #expect(
      ChatFormat.detect(template: nil, tokenizer: try ChatFixture.tokenizer("tokenizer-smollm2")) == .chatML)
    #expect(
      ChatFormat.detect(template: nil, tokenizer: try ChatFixture.tokenizer("tokenizer-spm-llama2")) == nil)
  }

  @Test func renderingAndIDsEqualHuggingFace() throws {
    let fixture = try ChatFixture.load()
    let tokenizers = [
      "smollm2": try ChatFixture.tokenizer("tokenizer-smollm2"),
      "spm-llama2": try ChatFixture.tokenizer("tokenizer-spm-llama2"),
    ]
    var compared = (texts: 0, ids: 0, errors: 0)
    for (index, entry) in fixture.cases.enumerated() {
      let format = try #require(ChatFormat(rawValue: entry.format))
      let (bos, eos) = ChatFixture.specials[entry.format]!
      let messages = entry.messages.map { ChatMessage(role: $0.role, content: $0.content) }
      let label = "case \(index) (\(entry.format), generation prompt \(entry.addGenerationPrompt))"
      do throws(ChatFormatError) {
        let rendered = try format.render(
          messages, addGenerationPrompt: entry.addGenerationPrompt, bos: bos, eos: eos)
        #expect(entry.error == nil, "\(label): Hugging Face raised \(entry.error ?? "")")
        #expect(rendered.text == entry.text, "\(label)")
        compared.texts += 1
        // Each assistant span is the content the template wrote (stripped where it strips),
        // then the marker closing the turn.
        let utf8 = Array(rendered.text.utf8)
        let said = rendered.assistantByteRanges.map { String(decoding: utf8[$0], as: UTF8.self) }
        let expected = messages.filter { $0.role == "assistant" }.map { message in
          switch format {
          case .chatML: return message.content + ChatTemplate.imEnd
          case .llama2: return ChatFormat.strip(message.content) + " " + eos
          case .mistral, .zephyr: return message.content + eos
          case .llama3: return ChatFormat.strip(message.content) + "<|eot_id|>"
          }
        }
        #expect(said == expected, "\(label)")
        if let ids = entry.ids, let name = entry.tokenizer, let tokenizer = tokenizers[name] {
          #expect(tokenizer.encode(rendered.text, withBOS: false) == ids, "\(label)")
          compared.ids += 1
        }
      } catch {
        #expect(entry.error != nil, "\(label): rendered where Hugging Face did not raise: \(error)")
        compared.errors += 1
      }
    }
    #expect(compared.texts == 48 && compared.ids == 36 && compared.errors == 12, "\(compared)")
  }

  @Test func templateErrorsNameTheMessage() {
    let user = ChatMessage(role: "user", content: "a")
    #expect(throws: ChatFormatError.rolesMustAlternate(index: 1, role: "user", expected: "assistant")) {
      try ChatFormat.llama2.render([user, user], addGenerationPrompt: true, bos: "<s>", eos: "</s>")
    }
    let system = ChatMessage(role: "system", content: "s")
    #expect(throws: ChatFormatError.unsupportedRole(index: 0, role: "system", format: .mistral)) {
      try ChatFormat.mistral.render([system, user], addGenerationPrompt: true, bos: "<s>", eos: "</s>")
    }
    #expect(
      ChatFormatError.unsupportedRole(index: 0, role: "system", format: .mistral).description
        == #"messages[0]: role "system" is not written by the mistral chat template (it takes "user" and "assistant")"#
    )
  }
}

/// `Fixtures/chat-templates.json`.
private struct ChatFixture: Decodable {
  struct Message: Decodable {
    var role: String
    var content: String
  }
  struct Case: Decodable {
    var format: String
    var messages: [Message]
    var addGenerationPrompt: Bool
    var text: String?
    var error: String?
    var tokenizer: String?
    var ids: [Int32]?

    enum CodingKeys: String, CodingKey {
      case format, messages, text, error, tokenizer, ids
      case addGenerationPrompt = "add_generation_prompt"
    }
  }
  var templates: [String: String]
  var cases: [Case]

  /// The BOS and EOS strings the script gave each layout's tokenizer.
  static let specials = [
    "chatml": ("<|im_start|>", "<|im_end|>"), "llama2": ("<s>", "</s>"), "mistral": ("<s>", "</s>"),
    "zephyr": ("<s>", "</s>"), "llama3": ("<|begin_of_text|>", "<|end_of_text|>"),
  ]

  static func load() throws -> ChatFixture {
    let url = try #require(Bundle.module.url(forResource: "Fixtures/chat-templates", withExtension: "json"))
    return try JSONDecoder().decode(ChatFixture.self, from: Data(contentsOf: url))
  }

  static func tokenizer(_ name: String) throws -> Tokenizer {
    try Tokenizer(
      tokenizerJSON: try #require(Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: "json")))
  }
}
