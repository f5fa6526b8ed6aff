import HTTPTypes
import Hummingbird
import NIOCore
import NIOHTTP1

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

    /// The same response in the HTTP front's shape.
    func frontResponse(api: WireAPI) -> FrontResponse {
        var fields = HTTPHeaders()
        fields.reserveCapacity(headers.count + 1)
        fields.add(name: "content-type", value: "application/json")
        for header in headers { fields.add(name: header.name, value: header.value) }
        let body = api == .anthropic ? anthropicBody() : openAIBody()
        return FrontResponse(status: status, headers: fields, body: .whole(ByteBuffer(bytes: body)))
    }
}

extension GatewayError {
    /// The whole HTTP/1.1 response, head and body, as bytes, closing the connection: for refusals
    /// written straight to a socket, before or past the HTTP handlers.
    func closingHTTPResponse(api: WireAPI) -> [UInt8] {
        let body = api == .anthropic ? anthropicBody() : openAIBody()
        let reason = HTTPResponse.Status(code: status).reasonPhrase
        var head = "HTTP/1.1 \(status) \(reason)\r\ncontent-type: application/json\r\n"
        head += "content-length: \(body.count)\r\nconnection: close\r\nserver: bifrost\r\n"
        for header in headers { head += "\(header.name): \(header.value)\r\n" }
        head += "\r\n"
        return Array(head.utf8) + body
    }
}
