import Foundation
import LoRAFormats
import LoRAOpenAI
import LoRAServe

extension FuzzTarget {
  /// `serve`'s request bodies, as a client would send them: decoded as each route's body
  /// (`/v1/completions`, `/v1/chat/completions`, `/v1/adapters`), then checked, rendered in
  /// every chat layout and tokenized as the server does, then put through the engine's own
  /// checks (`CompletionRequest.check`) for a context of `context` positions. Every refusal
  /// must be a 400 with an OpenAI error body; anything else stops the run.
  /// - tokenizer: the byte-level tokenizer of `FuzzContext` (12 ids).
  static func serveRequest(_ bytes: [UInt8], tokenizer: Tokenizer, context: Int = 64) {
    let data = Data(bytes)
    var refusals: [APIError] = []
    func refused(_ run: () throws(APIError) -> Void) {
      do throws(APIError) { try run() } catch { refusals.append(error) }
    }
    let formats: [ChatFormat?] = [nil] + ChatFormat.allCases.map { $0 }
    refused { () throws(APIError) in
      let body = try APIError.decode(AdapterLoadBody.self, from: data)
      _ = AdapterStore.isValidName(body.name)
    }
    refused { () throws(APIError) in
      let body = try APIError.decode(CompletionBody.self, from: data)
      let preparer = RequestPreparer(tokenizer: tokenizer, chatFormat: nil, contextLength: context)
      try engineCheck(preparer.prepare(body).request, context: context, vocabulary: tokenizer.vocabularySize)
    }
    refused { () throws(APIError) in
      let body = try APIError.decode(ChatCompletionBody.self, from: data)
      for format in formats {
        let preparer = RequestPreparer(tokenizer: tokenizer, chatFormat: format, contextLength: context)
        refused { () throws(APIError) in
          try engineCheck(
            preparer.prepare(body).request, context: context, vocabulary: tokenizer.vocabularySize)
        }
      }
    }
    for refusal in refusals {
      precondition(refusal.statusCode == 400, "a request body refused with \(refusal.statusCode): \(refusal)")
      precondition(!refusal.json.isEmpty && !refusal.message.isEmpty, "an empty refusal: \(refusal)")
    }
  }

  /// The engine's checks of a prepared request, answered as the server answers them.
  private static func engineCheck(_ request: CompletionRequest, context: Int, vocabulary: Int)
    throws(APIError)
  {
    do throws(ServeError) {
      try request.check(context: context, vocabularySize: vocabulary)
    } catch {
      throw APIError(error)
    }
  }
}
