import Hummingbird
import LoRAOpenAI

/// Hummingbird answers a thrown `APIError` with its status and OpenAI-shaped JSON body.
extension APIError: HTTPResponseError {
  public var status: HTTPResponse.Status { .init(code: statusCode) }

  public func response(from request: Request, context: some RequestContext) throws -> Response {
    Response(
      status: status, headers: [.contentType: "application/json"],
      body: ResponseBody(byteBuffer: ByteBuffer(bytes: json)))
  }
}
