import NIOCore

/// Frames of a TCP stream between nodes: each frame body (one sealed `Envelope`) follows its
/// length.
///
/// ```
///  0                4
///  +----------------+---------------------------+
///  | length (4, BE) | body (length bytes)       |
///  +----------------+---------------------------+
/// ```
///
/// The length is checked against the maximum as soon as its 4 bytes arrive, before any of the
/// body is buffered, so a peer announcing 4 GiB costs nothing. The length is not authenticated;
/// a corrupted one either trips the maximum or shifts the following frames, which then fail
/// authentication (`EnvelopeRejection.Code.tampered`): either way the connection is closed.
///
/// Add as `ByteToMessageHandler(FrameDecoder())` and `MessageToByteHandler(FrameEncoder())`;
/// modeled on swift-nio-extras' `LengthFieldBasedFrameDecoder`, plus the maximum and the EOF
/// check.
public struct FrameDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = ByteBuffer

    public static let lengthFieldByteCount = 4
    /// 16 MiB: room for a large batch of events in one frame, small enough that a few
    /// connections at the limit do not strain a node's memory.
    public static let defaultMaximumFrameLength = 16 << 20

    /// Largest body accepted, in bytes.
    public let maximumFrameLength: Int

    public init(maximumFrameLength: Int = FrameDecoder.defaultMaximumFrameLength) {
        precondition(
            (0...Int(UInt32.max)).contains(maximumFrameLength),
            "maximum frame length \(maximumFrameLength) must fit the 4-byte length field")
        self.maximumFrameLength = maximumFrameLength
    }

    public mutating func decode(buffer: inout ByteBuffer) throws -> ByteBuffer? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, endianness: .big, as: UInt32.self) else {
            return nil
        }
        guard UInt64(length) <= UInt64(maximumFrameLength) else {
            throw FrameError.tooLarge(length: Int(length), max: maximumFrameLength)
        }
        guard buffer.readableBytes - Self.lengthFieldByteCount >= Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: Self.lengthFieldByteCount)
        return buffer.readSlice(length: Int(length))
    }

    /// Delivers the frames still buffered; a partial frame left at the end is an error, since
    /// the peer stopped in the middle of a message.
    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> ByteBuffer? {
        if let frame = try decode(buffer: &buffer) { return frame }
        guard buffer.readableBytes == 0 else {
            let length = buffer.getInteger(at: buffer.readerIndex, endianness: .big, as: UInt32.self)
            throw FrameError.truncated(length: length.map(Int.init), received: buffer.readableBytes)
        }
        return nil
    }
}

/// Writes each outgoing buffer as one frame (see `FrameDecoder`).
public struct FrameEncoder: MessageToByteEncoder {
    public typealias OutboundIn = ByteBuffer

    /// Largest body sent; keep it at or below the receiver's `FrameDecoder.maximumFrameLength`.
    public let maximumFrameLength: Int

    public init(maximumFrameLength: Int = FrameDecoder.defaultMaximumFrameLength) {
        precondition(
            (0...Int(UInt32.max)).contains(maximumFrameLength),
            "maximum frame length \(maximumFrameLength) must fit the 4-byte length field")
        self.maximumFrameLength = maximumFrameLength
    }

    public func encode(data: ByteBuffer, out: inout ByteBuffer) throws {
        guard data.readableBytes <= maximumFrameLength else {
            throw FrameError.tooLargeToSend(length: data.readableBytes, max: maximumFrameLength)
        }
        out.reserveCapacity(FrameDecoder.lengthFieldByteCount + data.readableBytes)
        out.writeInteger(UInt32(data.readableBytes), endianness: .big)
        out.writeImmutableBuffer(data)
    }
}

/// Why a stream connection's framing failed. Inbound errors mean the connection is unusable
/// and should be closed.
public struct FrameError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Code: String, Hashable, Sendable {
        /// The peer announced a frame over the maximum.
        case tooLarge = "frame_too_large"
        /// A frame to send is over the maximum.
        case tooLargeToSend = "frame_too_large_to_send"
        /// The stream ended inside a frame.
        case truncated = "truncated_frame"
    }

    public var code: Code
    /// Body length announced or to send; nil when the stream ended inside the length field.
    public var length: Int?
    public var maximum: Int?
    /// Bytes of the unfinished frame (length field included) received before the end.
    public var received: Int?

    public static func tooLarge(length: Int, max: Int) -> FrameError {
        FrameError(code: .tooLarge, length: length, maximum: max, received: nil)
    }

    public static func tooLargeToSend(length: Int, max: Int) -> FrameError {
        FrameError(code: .tooLargeToSend, length: length, maximum: max, received: nil)
    }

    public static func truncated(length: Int?, received: Int) -> FrameError {
        FrameError(code: .truncated, length: length, maximum: nil, received: received)
    }

    public var description: String {
        let length = self.length.map(String.init) ?? "?"
        let maximum = self.maximum.map(String.init) ?? "?"
        let received = self.received.map(String.init) ?? "?"
        switch code {
        case .tooLarge:
            return
                "peer announced a \(length)-byte frame, over the \(maximum)-byte maximum: closing the connection; the peer is not a Bifrost node, or its maximum is larger than this node's (use the same on every node)"
        case .tooLargeToSend:
            return
                "cannot send a \(length)-byte frame, over the \(maximum)-byte maximum the peer accepts: send the payload in smaller parts"
        case .truncated:
            let expected = self.length.map { " of \(FrameDecoder.lengthFieldByteCount + $0)" } ?? ""
            return
                "stream ended inside a frame (\(received)\(expected) bytes received): the peer closed or crashed mid-write; the partial frame is dropped"
        }
    }
}
