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
/// When the log is full, `isWritable` is false and the gateway starts no new request: at
/// `retention.max_log_bytes` (`EventStore.isFull`) the events of requests already admitted are
/// still written; when the disk is full a refused batch is kept and retried every
/// `retryInterval`. `onWritability` hears of each change; while the log is full it is checked
/// every `retryInterval` (compaction or an operator makes room), and not at all otherwise.
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
    /// Whether the log takes events again, and why not when it does not.
    public typealias WritabilityHandler = @Sendable (_ writable: Bool, _ reason: String) -> Void

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
    /// How long a batch the full log refused waits before it is tried again.
    public let retryInterval: Duration
    /// The disk refused the last batch.
    private let diskFull = Atomic<Bool>(false)
    /// What `onWritability` was last told, and the reason while not writable.
    private let reported = Mutex<(writable: Bool, reason: String)>((true, ""))
    private let writabilityHandler = Mutex<WritabilityHandler?>(nil)
    private let outage: AsyncStream<Void>.Continuation
    private let outages: AsyncStream<Void>

    public init(
        store: EventStore, logger: Logger, capacity: Int = 100_000, retryInterval: Duration = .seconds(1),
        onCommitted: @escaping CommitHandler
    ) {
        self.store = store
        self.logger = logger
        self.capacity = max(1, capacity)
        self.retryInterval = retryInterval
        self.onCommitted = onCommitted
        (wakes, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        (outages, outage) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Appends that failed (the node logs each); a failed batch's counts stay in memory only.
    public var failedAppends: UInt64 { failures.load(ordering: .relaxed) }

    /// Events waiting for the writer now.
    public var pendingEvents: Int { queued.load(ordering: .relaxed) }

    /// Whether a new request may start: the queue is below its capacity.
    public var hasRoom: Bool { queued.load(ordering: .relaxed) < capacity }

    /// False while the log has no room for new requests' events.
    public var isWritable: Bool { !diskFull.load(ordering: .relaxed) && !store.isFull }

    /// Tells `onWritability` when `isWritable` changed since it last heard; while the log is
    /// full, has the watcher check it again.
    private func noteWritability(reason: @autoclosure () -> String) {
        let writable = isWritable
        let changed = reported.withLock { last -> (Bool, String)? in
            guard last.writable != writable else { return nil }
            last = (writable, writable ? "" : reason())
            return last
        }
        guard let (writable, why) = changed else { return }
        if writable {
            logger.notice("the event log has room again: this node takes new requests")
        } else {
            logger.critical(
                "the event log is full: this node refuses new requests until it has room",
                metadata: ["reason": .string(why)])
            outage.yield()
        }
        writabilityHandler.withLock { $0 }?(writable, why)
    }

    private var fullReason: String {
        "the log reached retention.max_log_bytes (\(store.settings.maxLogBytes ?? 0) bytes of live pages)"
    }

    /// Each outage: checks every `retryInterval` until the log has room again.
    private func watchOutages() async {
        for await _ in outages {
            while !isWritable {
                do { try await Task.sleep(for: retryInterval) } catch { return }
                noteWritability(reason: self.fullReason)
            }
        }
    }

    /// Sets who hears when the log stops or resumes taking events.
    public func onWritability(_ handler: @escaping WritabilityHandler) {
        writabilityHandler.withLock { $0 = handler }
    }

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

    /// One event; `seq`, when given, is a limiter sequence number its commit confirms (spend
    /// charged to a budget), as with admissions.
    public func record(_ payload: Event.Payload, seq: UInt64? = nil) {
        let wasEmpty = pending.withLock { p in
            let wasEmpty = p.isEmpty
            p.payloads.append(payload)
            if let seq { p.maxSeq = max(p.maxSeq, seq) }
            queued.add(1, ordering: .relaxed)
            return wasEmpty
        }
        if wasEmpty { wake.yield() }
    }

    public func run() async throws {
        if store.isFull { noteWritability(reason: fullReason) }
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.watchOutages() }
                for await _ in self.wakes {
                    await self.flush(retryingWhenFull: true)
                }
                group.cancelAll()
            }
        }
        // Whatever arrived before shutdown is still written, before the log closes.
        await flush(retryingWhenFull: false)
        let lost = queued.load(ordering: .relaxed)
        if lost > 0 {
            logger.error(
                "the disk is full: events of finished requests were not written before shutdown",
                metadata: ["events.count": "\(lost)"])
        }
    }

    /// Appends everything pending, batch after batch, until nothing is left. A batch the full
    /// log refuses goes back to the front of the queue; with `retryingWhenFull` it is tried
    /// again every `retryInterval` until it is written or the task is cancelled.
    func flush(retryingWhenFull: Bool) async {
        while true {
            let batch = pending.withLock { p -> Pending in
                let taken = p
                p = Pending()
                return taken
            }
            if batch.isEmpty { return }
            switch await append(batch) {
            case .written, .dropped:
                pending.withLock { _ in
                    _ = queued.subtract(batch.admissionOrder.count + batch.payloads.count, ordering: .relaxed)
                }
            case .full(let reason):
                restore(batch)
                diskFull.store(true, ordering: .relaxed)
                noteWritability(reason: reason)
                guard retryingWhenFull, !Task.isCancelled else { return }
                try? await Task.sleep(for: retryInterval)
                if Task.isCancelled { return }
            }
        }
    }

    private enum AppendResult {
        case written
        /// The log refused the batch for lack of room; it can be tried again.
        case full(reason: String)
        /// The log refused it for another reason; retrying would fail the same way.
        case dropped
    }

    /// Puts a refused batch back before whatever arrived since, merging equal admissions.
    private func restore(_ batch: Pending) {
        pending.withLock { p in
            var merged = batch
            for key in p.admissionOrder {
                if let n = merged.admissions[key] {
                    merged.admissions[key] = n + p.admissions[key]!
                    queued.subtract(1, ordering: .relaxed)
                } else {
                    merged.admissions[key] = p.admissions[key]!
                    merged.admissionOrder.append(key)
                }
            }
            merged.payloads += p.payloads
            merged.maxSeq = max(merged.maxSeq, p.maxSeq)
            p = merged
        }
    }

    private func append(_ batch: Pending) async -> AppendResult {
        do {
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
                diskFull.store(false, ordering: .relaxed)
                noteWritability(reason: self.fullReason)
                return .written
            } catch let error as EventLogError where error.code == .logFull {
                return .full(reason: error.message)
            } catch {
                failures.add(1, ordering: .relaxed)
                logger.error(
                    "cannot append gateway events; their counts are kept in memory only",
                    metadata: ["events.count": "\(payloads.count)", "error": "\(error)"])
                return .dropped
            }
        }
    }
}
