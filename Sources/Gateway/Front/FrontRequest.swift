import NIOCore
import NIOHTTP1

/// One client request, head and whole body, as the HTTP front hands it to a responder.
public struct FrontRequest: Sendable {
    public var head: HTTPRequestHead
    public var body: ByteBuffer
    /// The client wants the connection kept open after the response.
    public var keepAlive: Bool

    public init(head: HTTPRequestHead, body: ByteBuffer, keepAlive: Bool) {
        self.head = head
        self.body = body
        self.keepAlive = keepAlive
    }

    /// The path without its query.
    public var path: Substring {
        let uri = head.uri[...]
        guard let query = uri.utf8.firstIndex(of: UInt8(ascii: "?")) else { return uri }
        return uri[..<query]
    }
}
