import HTTPTypes
import Hummingbird
import NIOCore

extension GatewayError {
    /// The HTTP response for a client of `api`: the error body in that API's shape, JSON content
    /// type, and the error's extra headers.
    public func response(api: WireAPI) -> Response {
        var fields: HTTPFields = [.contentType: "application/json"]
        for header in headers {
            if let name = HTTPField.Name(header.name) { fields.append(HTTPField(name: name, value: header.value)) }
        }
        let body = api == .anthropic ? anthropicBody() : openAIBody()
        return Response(
            status: HTTPResponse.Status(code: status), headers: fields,
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
    }
}
