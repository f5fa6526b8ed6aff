import NIOCore

/// An upstream response's body as it arrives: an async sequence of buffers with backpressure.
/// The connection reads from the socket only while the consumer asks for more, so a slow
/// client slows the upstream read; a consumer that stops iterating (or is cancelled) closes
/// the upstream connection.
public struct UpstreamBody: AsyncSequence, Sendable {
    public typealias Element = ByteBuffer
    typealias Producer = NIOThrowingAsyncSequenceProducer<
        ByteBuffer, any Error, NIOAsyncSequenceProducerBackPressureStrategies.HighLowWatermark, UpstreamBodyDemand
    >

    let producer: Producer?
    let whole: ByteBuffer?

    init(producer: Producer) {
        self.producer = producer
        whole = nil
    }

    /// A body that is already complete.
    public init(_ buffer: ByteBuffer) {
        producer = nil
        whole = buffer
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        var inner: Producer.AsyncIterator?
        var whole: ByteBuffer?

        @concurrent public mutating func next() async throws -> ByteBuffer? {
            if let buffer = whole {
                whole = nil
                return buffer
            }
            return try await inner?.next()
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(inner: producer?.makeAsyncIterator(), whole: whole)
    }

    /// The body, when it arrived whole (the answer to a call that does not stream), refusing
    /// more than `maxBytes`; nil while it streams.
    public func wholeBody(upTo maxBytes: Int) -> Result<ByteBuffer, any Error>? {
        guard let whole else { return nil }
        guard whole.readableBytes <= maxBytes else { return .failure(UpstreamFailure.other("body too large")) }
        return .success(whole)
    }

    /// The whole body, refusing more than `maxBytes`.
    public func collect(upTo maxBytes: Int) async throws -> ByteBuffer {
        if let whole = wholeBody(upTo: maxBytes) { return try whole.get() }
        var all = ByteBuffer()
        for try await var part in self {
            guard all.readableBytes + part.readableBytes <= maxBytes else {
                throw UpstreamFailure.other("body too large")
            }
            all.writeBuffer(&part)
        }
        return all
    }
}

/// Tells the connection when the body's consumer wants more, or went away.
struct UpstreamBodyDemand: NIOAsyncSequenceProducerDelegate {
    let onDemand: @Sendable () -> Void
    let onTermination: @Sendable () -> Void

    func produceMore() { onDemand() }
    func didTerminate() { onTermination() }
}
