import HTTPTypes
import Hummingbird
import NIOCore
import NIOHTTP1

/// Writes a `Response` to a client connection: the head, then the body as it is produced, then
/// the end. A body of known length is written whole with one flush; a body without one (a
/// stream) is flushed part by part, and each part waits until the socket took it, so a slow
/// client slows the producer instead of filling memory.
struct FrontResponseWriter: Sendable {
    let channel: any Channel
    let version: HTTPVersion
    /// The client asked to keep the connection.
    let keepAlive: Bool

    /// The response head for `response`: its headers, the framing, `connection` and `server`.
    static func head(_ response: Response, version: HTTPVersion, keepAlive: Bool) -> HTTPResponseHead {
        var headers = HTTPHeaders()
        headers.reserveCapacity(response.headers.count + 3)
        var close = !keepAlive
        for field in response.headers {
            if field.name == .connection {
                if field.value.lowercased() == "close" { close = true }
                continue
            }
            headers.add(name: field.name.rawName, value: field.value)
        }
        if let length = response.body.contentLength {
            if response.headers[.contentLength] == nil { headers.add(name: "content-length", value: String(length)) }
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
        let status = HTTPResponseStatus(statusCode: response.status.code, reasonPhrase: response.status.reasonPhrase)
        return HTTPResponseHead(version: version, status: status, headers: headers)
    }

    func write(_ response: Response) async {
        let head = Self.head(response, version: version, keepAlive: keepAlive)
        channel.write(HTTPServerResponsePart.head(head), promise: nil)
        do {
            try await response.body.write(BodyWriter(channel: channel, flushEach: response.body.contentLength == nil))
        } catch {
            // The body failed half-way (the client left, or its producer failed): a response
            // that cannot be finished properly ends with the connection.
            channel.close(promise: nil)
        }
    }

    private struct BodyWriter: ResponseBodyWriter {
        let channel: any Channel
        let flushEach: Bool

        mutating func write(_ buffer: ByteBuffer) async throws {
            let part = HTTPServerResponsePart.body(.byteBuffer(buffer))
            if flushEach {
                try await channel.writeAndFlush(part).get()
            } else {
                channel.write(part, promise: nil)
            }
        }

        /// A stream's end waits until the socket took it; a whole body's does not (nothing
        /// follows it that the wait would hold back).
        consuming func finish(_ trailingHeaders: HTTPFields?) async throws {
            if flushEach {
                try await channel.writeAndFlush(HTTPServerResponsePart.end(nil)).get()
            } else {
                channel.writeAndFlush(HTTPServerResponsePart.end(nil), promise: nil)
            }
        }
    }
}
