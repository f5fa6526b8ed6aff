import Synchronization

/// An event as committed: decoded, and the exact bytes stored (what peers must receive).
public struct CommittedEvent: Sendable {
    public var event: Event
    public var bytes: [UInt8]

    public init(event: Event, bytes: [UInt8]) {
        self.event = event
        self.bytes = bytes
    }
}

/// Fans committed events out to subscribers (the replication streams to each peer).
///
/// Each subscriber has a bounded buffer. A subscriber that falls that far behind is ended rather
/// than allowed to grow memory without bound: its stream finishes, and it catches up from the
/// log by watermark, which is the same path a reconnecting peer takes.
final class CommitFeed: Sendable {
    private struct State {
        var next = 0
        var subscribers: [Int: AsyncStream<[CommittedEvent]>.Continuation] = [:]
        var closed = false
    }

    private let state = Mutex(State())
    let bufferedBatches: Int

    init(bufferedBatches: Int = 4096) {
        self.bufferedBatches = bufferedBatches
    }

    func subscribe() -> AsyncStream<[CommittedEvent]> {
        let (stream, continuation) = AsyncStream.makeStream(
            of: [CommittedEvent].self, bufferingPolicy: .bufferingOldest(bufferedBatches))
        let id: Int? = state.withLock { s in
            guard !s.closed else { return nil }
            s.next += 1
            s.subscribers[s.next] = continuation
            return s.next
        }
        guard let id else {
            continuation.finish()
            return stream
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.subscribers.removeValue(forKey: id) }
        }
        return stream
    }

    var hasSubscribers: Bool { state.withLock { !$0.subscribers.isEmpty } }

    func publish(_ batch: [CommittedEvent]) {
        guard !batch.isEmpty else { return }
        let subscribers = state.withLock { $0.subscribers }
        for (id, continuation) in subscribers {
            if case .dropped = continuation.yield(batch) {
                continuation.finish()
                _ = state.withLock { $0.subscribers.removeValue(forKey: id) }
            }
        }
    }

    func close() {
        let subscribers = state.withLock { s in
            s.closed = true
            defer { s.subscribers.removeAll() }
            return s.subscribers
        }
        for continuation in subscribers.values { continuation.finish() }
    }
}
