import NIOCore
import NIOHTTP1

/// What the HTTP front writes for one request: a status, its headers, and a body that is whole
/// or produced part by part. The front adds the framing (`content-length` or chunked),
/// `connection` and `server`.
public struct FrontResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: Body

    public enum Body: Sendable {
        /// Written with the head, with one flush.
        case whole(ByteBuffer)
        /// Written as `produce` makes it. With a `length` the parts go out together at the end;
        /// without one (a stream) each part is flushed and awaited, so a slow client slows the
        /// producer instead of filling memory.
        case produced(length: Int?, produce: @Sendable (FrontBodyWriter) async throws -> Void)
    }

    public init(status: Int, headers: HTTPHeaders = HTTPHeaders(), body: Body = .whole(ByteBuffer())) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A whole JSON body.
    static func json(status: Int, headers: HTTPHeaders = HTTPHeaders(), _ body: ByteBuffer) -> FrontResponse {
        var all = headers
        if !all.contains(name: "content-type") { all.add(name: "content-type", value: "application/json") }
        return FrontResponse(status: status, headers: all, body: .whole(body))
    }
}

/// Writes the parts of a produced body to the client connection.
public struct FrontBodyWriter: Sendable {
    let channel: any Channel
    /// Each part is flushed and awaited (a body without a length).
    let flushEach: Bool

    public func write(_ buffer: ByteBuffer) async throws {
        let part = HTTPServerResponsePart.body(.byteBuffer(buffer))
        if flushEach {
            try await channel.writeAndFlush(part).get()
        } else {
            channel.write(part, promise: nil)
        }
    }
}
