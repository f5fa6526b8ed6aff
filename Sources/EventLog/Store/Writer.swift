import CLMDB
import Foundation
import Synchronization

/// The single writer of an `EventStore`: a queue filled by any task, drained by one dedicated
/// thread that owns every LMDB write transaction (group commit, see `EventStore`).
final class Writer: @unchecked Sendable {
    struct Item {
        var id: EventID
        var bytes: [UInt8]
        var event: Event
        /// Computed by the submitting task, off the writer thread.
        var fingerprint: Fingerprint
    }

    enum Completion {
        case append(CheckedContinuation<[EventID], any Error>, [EventID])
        /// `outcomes` holds the verdicts decided before queueing; nil slots are filled, in order,
        /// by the commit.
        case insert(CheckedContinuation<[InsertOutcome], any Error>, [InsertOutcome?])
        case job(@Sendable (Writer) -> Void, fail: @Sendable (any Error) -> Void)
    }

    struct Request {
        var items: [Item]
        var durability: Durability
        var completion: Completion
    }

    // Guarded by `condition`.
    private let condition = NSCondition()
    private var pending: [Request] = []
    private var pendingEvents = 0
    private var pendingUrgent = false
    private var stopping = false
    private var hlc: HybridLogicalClock

    // Owned by the writer thread.
    let env: LMDBEnvironment
    let dbs: Databases
    let settings: EventStore.Settings
    let views: Mutex<ViewState>
    private let wallClock: any WallClock
    private(set) var lastKey: EventID?
    private(set) var seq: UInt64
    /// Counter and usage events below this were compacted: inserting one again would count it
    /// twice, so `writeEvents` refuses them.
    var compactedBefore: HLCTimestamp
    private var checkpointSeq: UInt64
    private var lastCheckpoint = ContinuousClock.now

    private let stats = Mutex(EventStoreStatistics())
    let feed = CommitFeed()
    private let finished = DispatchSemaphore(value: 0)
    private let started = Atomic<Bool>(false)
    private let joined = Atomic<Bool>(false)

    init(
        env: LMDBEnvironment, dbs: Databases, settings: EventStore.Settings, view: ViewState,
        hlc: HybridLogicalClock, lastKey: EventID?, seq: UInt64, compactedBefore: HLCTimestamp,
        wallClock: any WallClock
    ) {
        self.compactedBefore = compactedBefore
        self.env = env
        self.dbs = dbs
        self.settings = settings
        self.views = Mutex(view)
        self.hlc = hlc
        self.lastKey = lastKey
        self.seq = seq
        self.checkpointSeq = seq
        self.wallClock = wallClock
        stats.withLock { $0.lastSeq = seq }
    }

    func start() {
        guard !started.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let thread = Thread { [self] in self.loop() }
        thread.name = "bifrost-eventlog-writer"
        thread.qualityOfService = .userInitiated
        thread.start()
    }

    /// Drains what is queued, then stops the thread and waits for it. Later submissions fail
    /// with `.closed`.
    func stop() {
        condition.lock()
        stopping = true
        condition.signal()
        condition.unlock()
        if started.load(ordering: .acquiring), !joined.exchange(true, ordering: .acquiringAndReleasing) {
            finished.wait()
        }
        feed.close()
    }

    var statistics: EventStoreStatistics { stats.withLock { $0 } }

    var currentClock: HLCTimestamp {
        condition.lock()
        defer { condition.unlock() }
        return hlc.last
    }

    private func closedError() -> EventLogError {
        EventLogError(.closed, path: env.path, "the event store is closed; reopen it to write")
    }

    // MARK: Submission (any thread)

    func submitLocal(
        _ payloads: [Event.Payload], origin: NodeID, durability: Durability,
        continuation: CheckedContinuation<[EventID], any Error>
    ) {
        condition.lock()
        guard !stopping else {
            condition.unlock()
            return continuation.resume(throwing: closedError())
        }
        // Stamp under the lock (the clock is shared); encode and hash outside it, in parallel
        // with the writer. The writer restores key order if concurrent submitters interleave.
        let pt = wallClock.nowMillis()
        var ids: [EventID] = []
        ids.reserveCapacity(payloads.count)
        for _ in payloads { ids.append(EventID(hlc: hlc.now(physicalMillis: pt), origin: origin)) }
        condition.unlock()
        let hashing = ContinuousClock.now
        var items: [Item] = []
        items.reserveCapacity(payloads.count)
        for (id, payload) in zip(ids, payloads) {
            let event = Event(id: id, payload: payload)
            let bytes = EventCodec.encode(event)
            items.append(Item(id: id, bytes: bytes, event: event, fingerprint: Fingerprint(eventBytes: bytes)))
        }
        let hashTime = ContinuousClock.now - hashing
        condition.lock()
        guard !stopping else {
            condition.unlock()
            return continuation.resume(throwing: closedError())
        }
        enqueue(Request(items: items, durability: durability, completion: .append(continuation, ids)))
        condition.unlock()
        stats.withLock { $0.digestTime += hashTime }
    }

    func submitRemote(
        _ encoded: [[UInt8]], durability: Durability, continuation: CheckedContinuation<[InsertOutcome], any Error>
    ) {
        var outcomes = [InsertOutcome?](repeating: nil, count: encoded.count)
        var decoded: [(Int, Event)] = []
        decoded.reserveCapacity(encoded.count)
        var rejected: UInt64 = 0
        let hashing = ContinuousClock.now
        var fingerprints: [Fingerprint] = []
        fingerprints.reserveCapacity(encoded.count)
        for (i, bytes) in encoded.enumerated() {
            do {
                decoded.append((i, try EventCodec.decode(bytes)))
                fingerprints.append(Fingerprint(eventBytes: bytes))
            } catch {
                outcomes[i] = .rejected(error)
                rejected += 1
            }
        }
        let hashTime = ContinuousClock.now - hashing
        condition.lock()
        guard !stopping else {
            condition.unlock()
            return continuation.resume(throwing: closedError())
        }
        let pt = wallClock.nowMillis()
        var items: [Item] = []
        items.reserveCapacity(decoded.count)
        var quarantined: UInt64 = 0
        for (n, (i, event)) in decoded.enumerated() {
            do {
                try hlc.receive(event.id.hlc, physicalMillis: pt)
                items.append(Item(id: event.id, bytes: encoded[i], event: event, fingerprint: fingerprints[n]))
            } catch {
                outcomes[i] = .quarantined
                quarantined += 1
            }
        }
        if items.isEmpty {
            condition.unlock()
        } else {
            // Peers' events arrive already batched by the network: commit without the window, so
            // replication adds no waiting of its own.
            enqueue(
                Request(items: items, durability: durability, completion: .insert(continuation, outcomes)), urgent: true
            )
            condition.unlock()
        }
        stats.withLock {
            $0.digestTime += hashTime
            if rejected + quarantined > 0 {
                $0.rejected += rejected
                $0.quarantined += quarantined
            }
        }
        if items.isEmpty { continuation.resume(returning: outcomes.map { $0! }) }
    }

    /// Runs `body` on the writer thread after everything queued before it has been committed.
    func run<R: Sendable>(_ body: @escaping @Sendable (Writer) throws -> R) async throws -> R {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<R, any Error>) in
            let job: @Sendable (Writer) -> Void = { writer in
                do { continuation.resume(returning: try body(writer)) } catch { continuation.resume(throwing: error) }
            }
            condition.lock()
            guard !stopping else {
                condition.unlock()
                return continuation.resume(throwing: closedError())
            }
            enqueue(
                Request(
                    items: [], durability: .synced,
                    completion: .job(job, fail: { continuation.resume(throwing: $0) })))
            condition.unlock()
        }
    }

    /// Caller holds `condition`.
    private func enqueue(_ request: Request, urgent: Bool = false) {
        pending.append(request)
        pendingEvents += request.items.count
        if urgent || request.durability == .synced { pendingUrgent = true }
        condition.signal()
    }

    // MARK: The writer thread

    private func loop() {
        while true {
            condition.lock()
            while pending.isEmpty && !stopping { condition.wait() }
            if pending.isEmpty && stopping {
                condition.unlock()
                break
            }
            if !pendingUrgent && !stopping && pendingEvents < settings.groupCommitMaxEvents {
                let window = settings.groupCommitWindow.components
                let deadline = Date(
                    timeIntervalSinceNow: Double(window.seconds) + Double(window.attoseconds) * 1e-18)
                while !pendingUrgent && !stopping && pendingEvents < settings.groupCommitMaxEvents {
                    if !condition.wait(until: deadline) { break }
                }
            }
            let batch = pending
            pending = []
            pendingEvents = 0
            pendingUrgent = false
            let clockBound = hlc.last
            condition.unlock()
            process(batch, clockBound: clockBound)
        }
        finished.signal()
    }

    private func process(_ batch: [Request], clockBound: HLCTimestamp) {
        var group: [Request] = []
        for request in batch {
            if case .job(let job, _) = request.completion {
                commit(group, clockBound: clockBound)
                group.removeAll()
                job(self)
            } else {
                group.append(request)
            }
        }
        commit(group, clockBound: clockBound)
        maybeCheckpoint()
    }

    /// Retries `body` after growing the map each time it hits `MDB_MAP_FULL`.
    func withMapGrowth<R>(_ body: () throws -> R) throws -> R {
        var attempts = 0
        while true {
            do {
                return try body()
            } catch let error as LMDBError where error.isMapFull && attempts < 16 {
                attempts += 1
                try env.growMap()
                stats.withLock { $0.mapGrowths += 1 }
            }
        }
    }

    /// True while the log's live pages hold `settings.maxLogBytes` or more (set by the writer
    /// after each commit and compaction step; read by anyone).
    let full = Atomic<Bool>(false)

    /// Measures the log against `settings.maxLogBytes`: only a file that reached the limit is
    /// measured, by a walk of the free list, so the pages compaction frees count as room again.
    func refreshFullness() {
        guard let limit = settings.maxLogBytes else { return }
        var live = env.usedBytes()
        if live >= limit { live = (try? env.liveBytes()) ?? live }
        full.store(live >= limit, ordering: .relaxed)
    }

    private func fullRefusal() -> EventLogError {
        EventLogError(
            .logFull, path: env.path,
            "the log reached its limit of \(settings.maxLogBytes ?? 0) bytes (max_log_bytes); peers' events are refused until compaction frees room or the limit is raised"
        )
    }

    /// A write that failed for want of room as `.logFull`: the file system or its quota is
    /// full, the map cannot grow further, or a write came up short (LMDB reports a partial
    /// page write as `EIO`, which is also how a failing disk shows). The transaction was
    /// aborted, so the log is as before and the write can be tried again. Other errors as they are.
    private func classified(_ error: any Error) -> any Error {
        guard let lmdb = error as? LMDBError else { return error }
        switch lmdb.code {
        case ENOSPC, EDQUOT, ENOMEM, MDB_MAP_FULL:
            return EventLogError(
                .logFull, path: env.path,
                "cannot grow the log: \(lmdb.message); free space on its file system to resume writing")
        case EIO:
            return EventLogError(
                .logFull, path: env.path,
                "cannot write the log: \(lmdb.message) (a full file system or a failing disk); free space or check the disk to resume writing"
            )
        default:
            return error
        }
    }

    private func commit(_ group: [Request], clockBound: HLCTimestamp) {
        var group = group
        if full.load(ordering: .relaxed) {
            // A full log still takes this node's own events (those of requests it admitted
            // before it filled), but no more of its peers'.
            let refusal = fullRefusal()
            group.removeAll { request in
                guard case .insert = request.completion else { return false }
                stats.withLock { $0.refusedFull += 1 }
                fail(request, refusal)
                return true
            }
        }
        guard !group.isEmpty else { return }
        let synced = group.contains { $0.durability == .synced }
        let written: WrittenBatch
        do {
            let start = ContinuousClock.now
            written = try withMapGrowth { try env.write { txn in try writeEvents(group, clockBound: clockBound, txn) } }
            let elapsed = ContinuousClock.now - start
            stats.withLock { $0.commitTime += elapsed }
        } catch {
            let error = classified(error)
            if (error as? EventLogError)?.code == .logFull { stats.withLock { $0.refusedFull += 1 } }
            for request in group { fail(request, error) }
            return
        }
        seq = written.seq
        lastKey = written.lastKey
        refreshFullness()
        var syncError: (any Error)?
        if synced {
            do { try env.sync() } catch { syncError = error }
        }
        views.withLock { view in
            for (r, request) in group.enumerated() {
                for (i, item) in request.items.enumerated() where written.inserted[r][i] { view.apply(item.event) }
            }
        }
        if feed.hasSubscribers {
            var committed: [CommittedEvent] = []
            for (r, request) in group.enumerated() {
                for (i, item) in request.items.enumerated() where written.inserted[r][i] {
                    committed.append(CommittedEvent(event: item.event, bytes: item.bytes))
                }
            }
            committed.sort { $0.event.id < $1.event.id }
            feed.publish(committed)
        }
        var appended: UInt64 = 0
        var inserted: UInt64 = 0
        var duplicates: UInt64 = 0
        for (r, request) in group.enumerated() {
            if case .append = request.completion {
                appended += UInt64(request.items.count)
            } else {
                for ok in written.inserted[r] { if ok { inserted += 1 } else { duplicates += 1 } }
            }
        }
        stats.withLock {
            $0.appended += appended
            $0.inserted += inserted
            $0.duplicates += duplicates
            $0.commits += 1
            if synced { $0.syncedCommits += 1 }
            $0.lastSeq = seq
        }
        for (r, request) in group.enumerated() {
            if let syncError, request.durability == .synced {
                fail(request, syncError)
                continue
            }
            switch request.completion {
            case .append(let continuation, let ids):
                continuation.resume(returning: ids)
            case .insert(let continuation, var outcomes):
                var next = 0
                for slot in outcomes.indices where outcomes[slot] == nil {
                    outcomes[slot] = written.inserted[r][next] ? .inserted : .duplicate
                    next += 1
                }
                continuation.resume(returning: outcomes.map { $0! })
            case .job:
                break
            }
        }
    }

    private func fail(_ request: Request, _ error: any Error) {
        switch request.completion {
        case .append(let continuation, _): continuation.resume(throwing: error)
        case .insert(let continuation, _): continuation.resume(throwing: error)
        case .job(_, let fail): fail(error)
        }
    }

    struct WrittenBatch {
        var inserted: [[Bool]]
        var seq: UInt64
        var lastKey: EventID?
    }

    /// One transaction: events, insertion log, digests (same transaction, DESIGN §2), origin
    /// watermarks, names, clock bound and seq.
    private func writeEvents(
        _ group: [Request], clockBound: HLCTimestamp, _ txn: LMDBTransaction
    ) throws
        -> WrittenBatch
    {
        var inserted: [[Bool]] = group.map { [Bool](repeating: false, count: $0.items.count) }
        var seq = self.seq
        var last = self.lastKey
        var digests = DigestAccumulator()
        var origins: [NodeID: OriginWatermark] = [:]
        var names: [NodeID: String] = [:]
        var key = [UInt8](repeating: 0, count: EventID.byteCount)
        // Write in key order so MDB_APPEND applies to as many puts as possible; concurrent
        // submitters may have queued their stamped batches out of order.
        var order: [(request: Int, item: Int)] = []
        order.reserveCapacity(group.reduce(0) { $0 + $1.items.count })
        for (r, request) in group.enumerated() {
            for i in request.items.indices { order.append((r, i)) }
        }
        var sorted = true
        for n in order.indices.dropFirst() {
            let (pr, pi) = order[n - 1]
            let (cr, ci) = order[n]
            if group[cr].items[ci].id < group[pr].items[pi].id {
                sorted = false
                break
            }
        }
        if !sorted { order.sort { group[$0.request].items[$0.item].id < group[$1.request].items[$1.item].id } }
        var lastOrigin: NodeID?
        var originMark = OriginWatermark(maxHLC: .zero, count: 0)
        for (r, i) in order {
            let id = group[r].items[i].id
            if id.hlc < compactedBefore, group[r].items[i].event.payload.kind?.isCompactable == true {
                inserted[r][i] = false
                continue
            }
            do {
                let ok = try key.withUnsafeMutableBytes { keyBuffer in
                    id.write(to: keyBuffer)
                    let k = UnsafeRawBufferPointer(keyBuffer)
                    return try group[r].items[i].bytes.withUnsafeBytes { value in
                        // MDB_APPEND skips the search when keys arrive in order (local events
                        // always do); it refuses a key that is not greater than the last one,
                        // in which case the ordinary no-overwrite put decides.
                        if last.map({ id > $0 }) ?? true,
                            try txn.put(dbs.events, key: k, value: value, flags: MDB_APPEND)
                        {
                            return true
                        }
                        return try txn.put(dbs.events, key: k, value: value, flags: MDB_NOOVERWRITE)
                    }
                }
                inserted[r][i] = ok
                guard ok else { continue }
                if last.map({ id > $0 }) ?? true { last = id }
                seq += 1
                try withUnsafeBytes(of: seq.bigEndian) { s in
                    try key.withUnsafeBytes { k in _ = try txn.put(dbs.log, key: s, value: k, flags: MDB_APPEND) }
                }
                digests.add(group[r].items[i].fingerprint, at: id.hlc)
                if id.origin != lastOrigin {
                    if let lastOrigin {
                        origins[lastOrigin, default: OriginWatermark(maxHLC: .zero, count: 0)].merge(originMark)
                    }
                    lastOrigin = id.origin
                    originMark = OriginWatermark(maxHLC: .zero, count: 0)
                }
                originMark.maxHLC = max(originMark.maxHLC, id.hlc)
                originMark.count += 1
                if case .membershipChanged(let m) = group[r].items[i].event.payload {
                    names[NodeID(name: m.node)] = m.node
                    names[NodeID(name: m.observer)] = m.observer
                }
            }
        }
        if let lastOrigin { origins[lastOrigin, default: OriginWatermark(maxHLC: .zero, count: 0)].merge(originMark) }
        let applyStart = ContinuousClock.now
        try digests.apply(txn, dbs.digests, sign: .add)
        let applyTime = ContinuousClock.now - applyStart
        stats.withLock { $0.digestTime += applyTime }
        for (origin, delta) in origins {
            let k = Schema.u64(origin.rawValue)
            var w = delta
            if let existing = try txn.get(dbs.origins, key: k), existing.count == 16 {
                existing.withUnsafeBytes { e in
                    w.maxHLC = max(w.maxHLC, HLCTimestamp(rawValue: Schema.u64(e)))
                    w.count += Schema.u64(e, at: 8)
                }
            }
            try txn.put(dbs.origins, key: k, value: Schema.u64(w.maxHLC.rawValue) + Schema.u64(w.count))
        }
        for (id, name) in names where !name.isEmpty {
            try txn.put(dbs.names, key: Schema.u64(id.rawValue), value: Array(name.utf8), flags: MDB_NOOVERWRITE)
        }
        let bound = max(clockBound, last?.hlc ?? .zero)
        try txn.put(dbs.meta, key: Schema.Meta.clock, value: Schema.u64(bound.rawValue))
        try txn.put(dbs.meta, key: Schema.Meta.seq, value: Schema.u64(seq))
        return WrittenBatch(inserted: inserted, seq: seq, lastKey: last)
    }

    // MARK: Checkpoints

    private func maybeCheckpoint() {
        guard seq > checkpointSeq else { return }
        let due =
            seq - checkpointSeq >= settings.checkpointEveryEvents
            || ContinuousClock.now - lastCheckpoint >= settings.checkpointInterval
        guard due else { return }
        do {
            try writeCheckpoint()
        } catch {
            // The log stays authoritative; the next attempt or a restart's longer tail covers it.
            stats.withLock { $0.checkpointFailures += 1 }
            lastCheckpoint = .now
        }
    }

    /// Stores the current views with the seq they cover and prunes the insertion log below it.
    func writeCheckpoint() throws {
        let snapshot = views.withLock { $0 }
        let bytes = Schema.u64(seq) + ViewCodec.encode(snapshot)
        try withMapGrowth {
            try env.write { txn in
                try writeCheckpoint(bytes, txn)
            }
        }
        try env.sync()
        checkpointSeq = seq
        lastCheckpoint = .now
        stats.withLock { $0.checkpoints += 1 }
    }

    func writeCheckpoint(_ bytes: [UInt8], _ txn: LMDBTransaction) throws {
        try txn.put(dbs.meta, key: Schema.Meta.checkpoint, value: bytes)
        try txn.deleteAll(dbs.log, below: Schema.u64(seq + 1))
    }
}

/// Collects fingerprint deltas for a batch: events of one leaf bucket are summed first, then the
/// sum is added to the leaf and every ancestor once, so a batch costs a handful of digest writes
/// however many events it holds.
struct DigestAccumulator {
    enum Sign { case add, subtract }

    private var currentLeaf: DigestKey?
    private var currentHLC = HLCTimestamp.zero
    private var currentSum = Fingerprint.zero
    private(set) var deltas: [DigestKey: Fingerprint] = [:]

    mutating func add(_ fp: Fingerprint, at hlc: HLCTimestamp) {
        let leaf = DigestKey(level: 0, hlc: hlc)
        if leaf != currentLeaf {
            flush()
            currentLeaf = leaf
            currentHLC = hlc
        }
        currentSum.add(fp)
    }

    private mutating func flush() {
        guard currentLeaf != nil, currentSum.count > 0 else { return }
        for key in DigestKey.path(for: currentHLC) { deltas[key, default: .zero].add(currentSum) }
        currentSum = .zero
    }

    mutating func apply(_ txn: LMDBTransaction, _ db: LMDBDatabase, sign: Sign) throws {
        flush()
        currentLeaf = nil
        for (key, delta) in deltas {
            let k = key.bytes
            var fp = try k.withUnsafeBytes { kb in try txn.get(db, key: kb).flatMap(Fingerprint.init(bytes:)) } ?? .zero
            switch sign {
            case .add: fp.add(delta)
            case .subtract: fp.subtract(delta)
            }
            if fp.count == 0 {
                try txn.delete(db, key: k)
            } else {
                try txn.put(db, key: k, value: fp.bytes)
            }
        }
        deltas.removeAll(keepingCapacity: true)
    }
}
