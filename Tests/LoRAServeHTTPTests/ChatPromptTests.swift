import Foundation
import LoRAFormats
import Testing

@testable import LoRAOpenAI

/// `/v1/chat/completions` prompts in each model's own layout, as `apply_chat_template` gives
/// them, and 400s that name the message.
@Suite struct ChatPromptTests {
  /// The tiny Llama 2 layout tokenizer of the formats tests ("<s>" 1, "</s>" 2).
  static func llama2Tokenizer() throws -> Tokenizer {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
      .appendingPathComponent("../LoRAFormatsTests/Fixtures/tokenizer-spm-llama2.json").standardizedFileURL
    return try Tokenizer(tokenizerJSON: url)
  }

  @Test func llama2PromptEqualsHuggingFace() throws {
    let tokenizer = try Self.llama2Tokenizer()
    let ids = try RequestPreparer.chatPrompt(
      [
        ChatMessageBody(role: "developer", content: "You answer in one word."),
        ChatMessageBody(role: "user", content: "Capital of France?"),
      ],
      format: .llama2, tokenizer: tokenizer)
    // apply_chat_template(..., add_generation_prompt=True) on Llama-2-7b-chat-hf's template.
    let text = "<s>[INST] <<SYS>>\nYou answer in one word.\n<</SYS>>\n\nCapital of France? [/INST]"
    #expect(ids == tokenizer.encode(text, withBOS: false))
    #expect(ids.first == 1 && ids.filter { $0 == 1 }.count == 1)
  }

  @Test func whatTheLayoutCannotWriteIsA400() throws {
    let tokenizer = try Self.llama2Tokenizer()
    let system = ChatMessageBody(role: "system", content: "s")
    let user = ChatMessageBody(role: "user", content: "u")
    var error: APIError?
    do throws(APIError) {
      _ = try RequestPreparer.chatPrompt([system, user], format: .mistral, tokenizer: tokenizer)
    } catch let thrown { error = thrown }
    #expect(error?.statusCode == 400 && error?.param == "messages")
    #expect(
      error?.message
        == #"'messages': messages[0]: role "system" is not written by the mistral chat template (it takes "user" and "assistant")"#
    )
    error = nil
    do throws(APIError) {
      _ = try RequestPreparer.chatPrompt([user], format: nil, tokenizer: tokenizer)
    } catch let thrown { error = thrown }
    #expect(
      error?.statusCode == 400 && error?.message.contains("chatml, llama2, mistral, zephyr, llama3") == true)
  }
}
