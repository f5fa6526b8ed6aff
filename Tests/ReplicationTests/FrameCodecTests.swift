import NIOCore
import NIOEmbedded
import NIOTestUtils
import Replication
import Testing

@Suite struct FrameCodecTests {
    static func frame(_ body: [UInt8]) -> [UInt8] {
        withUnsafeBytes(of: UInt32(body.count).bigEndian) { Array($0) } + body
    }

    static let bodies: [[UInt8]] = [
        [], Array("a".utf8), Array(repeating: 0x5A, count: 300), [0, 0, 0, 0], Array(0...255),
    ]

    static func decoderChannel(_ decoder: FrameDecoder = FrameDecoder()) -> EmbeddedChannel {
        EmbeddedChannel(handler: ByteToMessageHandler(decoder))
    }

    static func readAll(_ channel: EmbeddedChannel) throws -> [[UInt8]] {
        var frames: [[UInt8]] = []
        while let buffer = try channel.readInbound(as: ByteBuffer.self) {
            frames.append(Array(buffer.readableBytesView))
        }
        return frames
    }

    @Test func verifierAcceptsSeveralFrames() throws {
        let pairs = [
            (ByteBuffer(bytes: Self.frame(Self.bodies[1])), [ByteBuffer(bytes: Self.bodies[1])]),
            (ByteBuffer(bytes: Self.bodies.flatMap(Self.frame)), Self.bodies.map { ByteBuffer(bytes: $0) }),
            (ByteBuffer(bytes: Self.frame([])), [ByteBuffer()]),
            (ByteBuffer(bytes: Self.frame(Self.bodies[2])), [ByteBuffer(bytes: Self.bodies[2])]),
        ]
        try ByteToMessageDecoderVerifier.verifyDecoder(inputOutputPairs: pairs) { FrameDecoder() }
    }

    @Test func inputSplitAtEveryByteBoundary() throws {
        let stream = Self.bodies.flatMap(Self.frame)
        for split in 0...stream.count {
            let channel = Self.decoderChannel()
            try channel.writeInbound(ByteBuffer(bytes: stream[..<split]))
            let early = try Self.readAll(channel)
            try channel.writeInbound(ByteBuffer(bytes: stream[split...]))
            #expect(early + (try Self.readAll(channel)) == Self.bodies, "split at \(split)")
            #expect(try channel.finish().isClean)
        }
    }

    @Test func zeroLengthFrame() throws {
        let channel = Self.decoderChannel()
        try channel.writeInbound(ByteBuffer(bytes: [0, 0, 0, 0]))
        #expect(try channel.readInbound(as: ByteBuffer.self) == ByteBuffer())
        #expect(try channel.readInbound(as: ByteBuffer.self) == nil)
        #expect(try channel.finish().isClean)
    }

    @Test func maliciousLengthIsRejectedFromTheHeaderAlone() throws {
        var decoder = FrameDecoder()
        var header = ByteBuffer(bytes: [0xFF, 0xFF, 0xFF, 0xFF])
        #expect(throws: FrameError.tooLarge(length: 0xFFFF_FFFF, max: 16 << 20)) { try decoder.decode(buffer: &header) }
        #expect(header.readerIndex == 0)

        let channel = Self.decoderChannel()
        #expect(throws: FrameError.tooLarge(length: 0xFFFF_FFFF, max: 16 << 20)) {
            try channel.writeInbound(ByteBuffer(bytes: [0xFF, 0xFF, 0xFF, 0xFF]))
        }
        _ = try? channel.finish()
    }

    @Test func defaultMaximumIsCheckedBeforeTheBody() throws {
        var decoder = FrameDecoder()
        var atMax = ByteBuffer(bytes: [0x01, 0x00, 0x00, 0x00])
        #expect(try decoder.decode(buffer: &atMax) == nil)
        var overMax = ByteBuffer(bytes: [0x01, 0x00, 0x00, 0x01])
        #expect(throws: FrameError.tooLarge(length: (16 << 20) + 1, max: 16 << 20)) {
            try decoder.decode(buffer: &overMax)
        }
    }

    @Test func exactMaximumIsAccepted() throws {
        let body = [UInt8](repeating: 7, count: 1_000)
        let channel = Self.decoderChannel(FrameDecoder(maximumFrameLength: 1_000))
        try channel.writeInbound(ByteBuffer(bytes: Self.frame(body)))
        #expect(try Self.readAll(channel) == [body])
        #expect(try channel.finish().isClean)
    }

    @Test func maximumPlusOneIsRejected() throws {
        let channel = Self.decoderChannel(FrameDecoder(maximumFrameLength: 1_000))
        #expect(throws: FrameError.tooLarge(length: 1_001, max: 1_000)) {
            try channel.writeInbound(ByteBuffer(bytes: Self.frame([UInt8](repeating: 7, count: 1_001)).prefix(4)))
        }
        _ = try? channel.finish()
    }

    @Test func framesBeforeAnOversizedOneAreDelivered() throws {
        let channel = Self.decoderChannel(FrameDecoder(maximumFrameLength: 10))
        #expect(throws: FrameError.tooLarge(length: 11, max: 10)) {
            try channel.writeInbound(
                ByteBuffer(bytes: Self.frame([1, 2]) + Self.frame(Array(repeating: 0, count: 11))))
        }
        #expect(try channel.readInbound(as: ByteBuffer.self) == ByteBuffer(bytes: [1, 2]))
        _ = try? channel.finish()
    }

    @Test(
        arguments: [
            ([0, 0], FrameError.truncated(length: nil, received: 2)),
            ([0, 0, 0, 5, 1, 2], FrameError.truncated(length: 5, received: 6)),
            ([0, 0, 0, 1, 9, 0, 0, 0, 2, 1], FrameError.truncated(length: 2, received: 5)),
        ] as [([UInt8], FrameError)])
    func leftoverBytesAtEOFAreAnError(input: [UInt8], error: FrameError) throws {
        let channel = Self.decoderChannel()
        try channel.writeInbound(ByteBuffer(bytes: input))
        let complete = try Self.readAll(channel)
        #expect(throws: error) { try channel.finish() }
        #expect(complete == (input.count == 10 ? [[9]] : []))
        #expect(error.description.contains("stream ended inside a frame"))

        var decoder = FrameDecoder()
        var buffer = ByteBuffer(bytes: input)
        _ = try decoder.decode(buffer: &buffer)
        #expect(throws: error) { try decoder.decodeLast(buffer: &buffer, seenEOF: true) }
    }

    @Test func emptyBufferAtEOFIsClean() throws {
        var decoder = FrameDecoder()
        var buffer = ByteBuffer()
        #expect(try decoder.decodeLast(buffer: &buffer, seenEOF: true) == nil)
    }

    // MARK: Encoder

    @Test func encoderWritesLengthThenBody() throws {
        let channel = EmbeddedChannel(handler: MessageToByteHandler(FrameEncoder()))
        for body in Self.bodies {
            try channel.writeOutbound(ByteBuffer(bytes: body))
            let written = try #require(try channel.readOutbound(as: ByteBuffer.self))
            #expect(Array(written.readableBytesView) == Self.frame(body))
        }
        #expect(try channel.finish().isClean)
    }

    @Test func encoderRefusesFramesOverTheMaximum() throws {
        let channel = EmbeddedChannel(handler: MessageToByteHandler(FrameEncoder(maximumFrameLength: 4)))
        try channel.writeOutbound(ByteBuffer(bytes: [1, 2, 3, 4]))
        #expect(try channel.readOutbound(as: ByteBuffer.self) == ByteBuffer(bytes: Self.frame([1, 2, 3, 4])))
        #expect(throws: FrameError.tooLargeToSend(length: 5, max: 4)) {
            try channel.writeOutbound(ByteBuffer(bytes: [1, 2, 3, 4, 5]))
        }
        _ = try? channel.finish()
    }

    @Test func encoderOutputDecodes() throws {
        var out = ByteBuffer()
        for body in Self.bodies { try FrameEncoder().encode(data: ByteBuffer(bytes: body), out: &out) }
        var decoder = FrameDecoder()
        var decoded: [[UInt8]] = []
        while let frame = try decoder.decode(buffer: &out) { decoded.append(Array(frame.readableBytesView)) }
        #expect(decoded == Self.bodies && out.readableBytes == 0)
    }

    @Test func errorsSayWhatHappened() {
        #expect(FrameError.tooLarge(length: 20, max: 10).description.hasPrefix("peer announced a 20-byte frame"))
        #expect(FrameError.tooLargeToSend(length: 20, max: 10).description.contains("smaller parts"))
        #expect(FrameError.truncated(length: 5, received: 6).description.contains("6 of 9 bytes received"))
    }
}
