import EventLog
import Logging
import ServiceLifecycle
import Synchronization

/// Writes the gateway's events without making requests wait for a commit.
///
/// Requests hand over payloads; one task appends whatever accumulated while the previous
/// append was committing, so batches grow with load and an idle node commits at once.
///
/// The queue is bounded: once `capacity` events wait for the writer, `hasRoom` is false and the
/// gateway refuses new requests (503 with `Retry-After`) until the writer catches up. What an
/// admitted request records is always taken, so nothing accepted is lost; the queue holds at
/// most `capacity` plus the events of the requests in flight.
/// Admissions with the same limit keys and window coalesce into one `ratelimit.increment`
/// (`requests` = their number), which the views count exactly.
///
/// After each append, `onCommitted` receives the greatest limiter sequence number the batch
/// carried and the batch's greatest event id, so the limiter can be told once peers have it.
public final class EventRecorder: Service, Sendable {
    struct AdmissionKey: Hashable {
        var keys: [String]
        var windowStartMillis: UInt64
        var windowMillis: UInt32
    }

    struct Pending {
        var admissions: [AdmissionKey: UInt32] = [:]
        var admissionOrder: [AdmissionKey] = []
        var payloads: [Event.Payload] = []
        var maxSeq: UInt64 = 0
        var isEmpty: Bool { admissionOrder.isEmpty && payloads.isEmpty }
    }

    public typealias CommitHandler = @Sendable (_ maxSeq: UInt64, _ lastEvent: EventID) -> Void

    let store: EventStore
    let logger: Logger
    private let pending = Mutex(Pending())
    private let wake: AsyncStream<Void>.Continuation
    private let wakes: AsyncStream<Void>
    private let onCommitted: CommitHandler
    private let failures = Atomic<UInt64>(0)
    /// Events waiting for the writer (coalesced admissions count once).
    private let queued = Atomic<Int>(0)
    /// Waiting events beyond which `hasRoom` is false.
    public let capacity: Int

    public init(store: EventStore, logger: Logger, capacity: Int = 100_000, onCommitted: @escaping CommitHandler) {
        self.store = store
        self.logger = logger
        self.capacity = max(1, capacity)
        self.onCommitted = onCommitted
        (wakes, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Appends that failed (the node logs each); a failed batch's counts stay in memory only.
    public var failedAppends: UInt64 { failures.load(ordering: .relaxed) }

    /// Events waiting for the writer now.
    public var pendingEvents: Int { queued.load(ordering: .relaxed) }

    /// Whether a new request may start: the queue is below its capacity.
    public var hasRoom: Bool { queued.load(ordering: .relaxed) < capacity }

    /// One admitted request (or several with the same keys), carrying limiter sequence `seq`.
    public func recordAdmission(keys: [String], windowStartMillis: UInt64, windowMillis: UInt32, seq: UInt64) {
        let key = AdmissionKey(keys: keys, windowStartMillis: windowStartMillis, windowMillis: windowMillis)
        let wasEmpty = pending.withLock { p in
            let wasEmpty = p.isEmpty
            if let n = p.admissions[key] {
                p.admissions[key] = n + 1
            } else {
                p.admissions[key] = 1
                p.admissionOrder.append(key)
                queued.add(1, ordering: .relaxed)
            }
            p.maxSeq = max(p.maxSeq, seq)
            return wasEmpty
        }
        if wasEmpty { wake.yield() }
    }

    public func record(_ payload: Event.Payload) {
        let wasEmpty = pending.withLock { p in
            let wasEmpty = p.isEmpty
            p.payloads.append(payload)
            queued.add(1, ordering: .relaxed)
            return wasEmpty
        }
        if wasEmpty { wake.yield() }
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            for await _ in self.wakes {
                await self.flush()
            }
        }
        // Whatever arrived before shutdown is still written, before the log closes.
        await flush()
    }

    /// Appends everything pending, batch after batch, until nothing is left.
    func flush() async {
        while true {
            let batch = pending.withLock { p -> Pending in
                let taken = p
                p = Pending()
                return taken
            }
            if batch.isEmpty { return }
            defer { queued.subtract(batch.admissionOrder.count + batch.payloads.count, ordering: .relaxed) }
            var payloads: [Event.Payload] = batch.admissionOrder.map { key in
                .rateLimitIncrement(
                    RateLimitIncrement(
                        keys: key.keys, windowStartMillis: key.windowStartMillis, windowMillis: key.windowMillis,
                        requests: batch.admissions[key]!))
            }
            payloads += batch.payloads
            do {
                let ids = try await store.append(contentsOf: payloads)
                if let last = ids.max() { onCommitted(batch.maxSeq, last) }
            } catch {
                failures.add(1, ordering: .relaxed)
                logger.error(
                    "cannot append gateway events; their counts are kept in memory only",
                    metadata: ["events.count": "\(payloads.count)", "error": "\(error)"])
            }
        }
    }
}
