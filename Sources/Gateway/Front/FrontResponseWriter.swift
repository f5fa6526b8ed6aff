import NIOCore
import NIOHTTP1

/// Writes a `FrontResponse` to a client connection: the head, then the body, then the end. A
/// whole body goes out with its head in one flush, without waiting for the socket; a produced
/// body of unknown length (a stream) is flushed part by part, and its end waits until the socket
/// took it.
struct FrontResponseWriter: Sendable {
    let channel: any Channel
    let version: HTTPVersion
    /// The client asked to keep the connection.
    let keepAlive: Bool

    /// The response head for `response`: its headers, the framing, `connection` and `server`.
    static func head(_ response: FrontResponse, version: HTTPVersion, keepAlive: Bool) -> HTTPResponseHead {
        var headers = response.headers
        var close = !keepAlive
        if headers.contains(name: "connection") {
            if headers[canonicalForm: "connection"].contains(where: { $0.lowercased() == "close" }) { close = true }
            headers.remove(name: "connection")
        }
        let length: Int? =
            switch response.body {
            case .whole(let buffer): buffer.readableBytes
            case .produced(let length, _): length
            }
        if let length {
            if !headers.contains(name: "content-length") { headers.add(name: "content-length", value: String(length)) }
        } else if version.major == 1 && version.minor == 0 {
            // No chunked encoding before HTTP/1.1: the end of the connection ends the body.
            close = true
        }
        if close {
            headers.add(name: "connection", value: "close")
        } else if version.major == 1 && version.minor == 0 {
            headers.add(name: "connection", value: "keep-alive")
        }
        headers.add(name: "server", value: "bifrost")
        return HTTPResponseHead(
            version: version, status: HTTPResponseStatus(statusCode: response.status), headers: headers)
    }

    /// Writes a whole response at once; on the channel's event loop.
    func writeWhole(_ response: FrontResponse, body: ByteBuffer) {
        channel.write(
            HTTPServerResponsePart.head(Self.head(response, version: version, keepAlive: keepAlive)), promise: nil)
        if body.readableBytes > 0 { channel.write(HTTPServerResponsePart.body(.byteBuffer(body)), promise: nil) }
        channel.writeAndFlush(HTTPServerResponsePart.end(nil), promise: nil)
    }

    func write(_ response: FrontResponse) async {
        switch response.body {
        case .whole(let body):
            writeWhole(response, body: body)
        case .produced(let length, let produce):
            channel.write(
                HTTPServerResponsePart.head(Self.head(response, version: version, keepAlive: keepAlive)), promise: nil)
            do {
                try await produce(FrontBodyWriter(channel: channel, flushEach: length == nil))
                if length == nil {
                    try await channel.writeAndFlush(HTTPServerResponsePart.end(nil)).get()
                } else {
                    channel.writeAndFlush(HTTPServerResponsePart.end(nil), promise: nil)
                }
            } catch {
                // The body failed half-way (the client left, or its producer failed): a response
                // that cannot be finished properly ends with the connection.
                channel.close(promise: nil)
            }
        }
    }
}
