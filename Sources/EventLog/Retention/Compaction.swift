import CLMDB

/// What a compaction did.
public struct CompactionReport: Sendable, Equatable {
    /// Where the compacted range ends now (the requested horizon rounded down to a chunk, or
    /// the boundary a bounded step stopped at).
    public var horizon: HLCTimestamp
    /// Events replaced by aggregates (an aggregate of an earlier step folded again counts too).
    public var eventsRemoved: UInt64
    public var aggregatesWritten: UInt64
    public var bytesBefore: Int
    public var bytesAfter: Int
}

/// Groups of counter and usage events that fold identically when replaced by one aggregate.
///
/// A group shares origin, kind family, every field a view reads, and the performance window of
/// its HLC, so folding the aggregate adds exactly what folding the members added (sums are
/// associative and commutative). The aggregate takes the id of the group's greatest member,
/// which makes it deterministic: two nodes compacting the same set of events write
/// byte-identical aggregates, and a peer that still holds the originals sees a duplicate id.
struct CompactionGroup: Hashable {
    enum Family: Hashable { case increment, usage }
    var origin: NodeID
    var family: Family
    var keyID: String
    var model: String
    var keys: [String]
    var windowStartMillis: UInt64
    var windowMillis: UInt32
    var performanceWindow: UInt64
}

extension CompactionGroup {
    static func usage(
        _ origin: NodeID, _ keyID: String, _ model: String, _ keys: [String], _ windowStart: UInt64, _ window: UInt32,
        _ performanceWindow: UInt64
    ) -> CompactionGroup {
        CompactionGroup(
            origin: origin, family: .usage, keyID: keyID, model: model, keys: keys, windowStartMillis: windowStart,
            windowMillis: window, performanceWindow: performanceWindow)
    }
}

struct CompactionAccumulator {
    var members: [(EventID, Fingerprint, String)] = []
    var requests: UInt64 = 0
    var summary = UsageSummary()
    var maxID = EventID(hlc: .zero, origin: NodeID(rawValue: 0))
}

extension Writer {
    /// Compaction works in steps of whole chunks (one second, or the performance window when
    /// that is not a whole number of seconds), so two nodes that step differently still end
    /// at the same boundaries.
    var compactionChunkMillis: UInt64 {
        let window = settings.views.performanceWindowMillis
        return window % 1_000 == 0 ? 1_000 : window
    }

    /// One bounded compaction step: the events from the last compacted boundary on, a chunk at
    /// a time, until about `maxEvents` new events were read or `requested` (rounded down to a
    /// chunk) is reached, in one write transaction. Nil when nothing is left below the horizon.
    ///
    /// A group (origin, family, the fields a view reads, and the performance window) becomes one
    /// aggregate whose id is that of its greatest member. A later step that reaches more members
    /// of a group folds the earlier aggregate in (aggregates merge exactly: sums), so once a
    /// performance window is wholly behind the horizon it holds the same aggregates on every
    /// node, however each node stepped. `compacted_before` moves to the step's end in the same
    /// transaction; reconciliation never compares below it, and inserts of counter or usage
    /// events below it are refused (`writeEvents`), so nothing compacted is counted twice.
    func compactStep(before requested: HLCTimestamp, maxEvents: Int) throws -> CompactionReport? {
        let window = settings.views.performanceWindowMillis
        let chunk = compactionChunkMillis
        let horizon = HLCTimestamp(wallMillis: requested.wallMillis / chunk * chunk, logical: 0)
        let from = compactedBefore
        guard from < horizon else { return nil }
        // Earlier members of the groups this step can reach: the performance window `from` is in.
        let scanFrom = HLCTimestamp(wallMillis: from.wallMillis / window * window, logical: 0)
        let bytesBefore = env.usedBytes()
        var removed: UInt64 = 0
        var written: UInt64 = 0
        var end = horizon
        try withMapGrowth {
            removed = 0
            written = 0
            end = horizon
            var kindDelta: [String: Int64] = [:]
            try env.write { txn in
                var groups: [CompactionGroup: CompactionAccumulator] = [:]
                var fresh = 0
                var chunkEnd: UInt64 = 0
                try txn.scan(dbs.events, from: EventID(hlc: scanFrom, origin: NodeID(rawValue: 0)).bytes) {
                    key, value in
                    guard let id = EventID(key: key) else { return true }
                    if id.hlc >= horizon { return false }
                    if id.hlc >= from {
                        // Stop at the first chunk boundary after the budget is spent.
                        if fresh >= maxEvents && id.hlc.wallMillis >= chunkEnd {
                            end = HLCTimestamp(wallMillis: chunkEnd, logical: 0)
                            return false
                        }
                        fresh += 1
                        chunkEnd = (id.hlc.wallMillis / chunk + 1) * chunk
                    }
                    guard value.count > 1, let kind = EventKind(rawValue: value[1]), kind.isCompactable else {
                        return true
                    }
                    let event = try EventCodec.decode(value)
                    let perf = id.hlc.wallMillis / window * window
                    let group: CompactionGroup
                    var acc: CompactionAccumulator
                    switch event.payload {
                    case .rateLimitIncrement(let p):
                        group = CompactionGroup(
                            origin: id.origin, family: .increment, keyID: "", model: "", keys: p.keys,
                            windowStartMillis: p.windowStartMillis, windowMillis: p.windowMillis,
                            performanceWindow: perf)
                        acc = groups[group] ?? CompactionAccumulator()
                        acc.requests += UInt64(p.requests)
                    case .usageRecorded(let p):
                        group = .usage(
                            id.origin, p.keyID, p.model, p.limitKeys, p.windowStartMillis, p.windowMillis, perf)
                        acc = groups[group] ?? CompactionAccumulator()
                        acc.summary.record(p)
                    case .usageAggregated(let p):
                        group = .usage(
                            id.origin, p.keyID, p.model, p.limitKeys, p.windowStartMillis, p.windowMillis, perf)
                        acc = groups[group] ?? CompactionAccumulator()
                        acc.summary.merge(p.summary)
                    default:
                        return true
                    }
                    acc.members.append((id, Fingerprint(eventBytes: value), event.payload.kindName))
                    if id > acc.maxID { acc.maxID = id }
                    groups[group] = acc
                    return true
                }
                var removeDigests = DigestAccumulator()
                var addDigests = DigestAccumulator()
                var originRemoved: [NodeID: UInt64] = [:]
                // A single event is already as small as it gets.
                for (group, acc) in groups where acc.members.count > 1 {
                    let payload: Event.Payload
                    switch group.family {
                    case .increment:
                        // Counts that no longer fit one event stay as they are.
                        guard let requests = UInt32(exactly: acc.requests) else { continue }
                        payload = .rateLimitIncrement(
                            RateLimitIncrement(
                                keys: group.keys, windowStartMillis: group.windowStartMillis,
                                windowMillis: group.windowMillis, requests: requests))
                    case .usage:
                        payload = .usageAggregated(
                            UsageAggregated(
                                keyID: group.keyID, model: group.model, limitKeys: group.keys,
                                windowStartMillis: group.windowStartMillis, windowMillis: group.windowMillis,
                                summary: acc.summary))
                    }
                    for (id, fp, kindName) in acc.members {
                        try txn.delete(dbs.events, key: id.bytes)
                        removeDigests.add(fp, at: id.hlc)
                        kindDelta[kindName, default: 0] -= 1
                    }
                    let aggregate = Event(id: acc.maxID, payload: payload)
                    let bytes = EventCodec.encode(aggregate)
                    try txn.put(dbs.events, key: acc.maxID.bytes, value: bytes)
                    addDigests.add(Fingerprint(eventBytes: bytes), at: acc.maxID.hlc)
                    kindDelta[payload.kindName, default: 0] += 1
                    originRemoved[group.origin, default: 0] += UInt64(acc.members.count - 1)
                    removed += UInt64(acc.members.count)
                    written += 1
                }
                try removeDigests.apply(txn, dbs.digests, sign: .subtract)
                try addDigests.apply(txn, dbs.digests, sign: .add)
                for (origin, n) in originRemoved {
                    let k = Schema.u64(origin.rawValue)
                    guard let existing = try txn.get(dbs.origins, key: k), existing.count == 16 else { continue }
                    let (maxHLC, count) = existing.withUnsafeBytes { (Schema.u64($0), Schema.u64($0, at: 8)) }
                    try txn.put(dbs.origins, key: k, value: Schema.u64(maxHLC) + Schema.u64(count - min(count, n)))
                }
                try txn.put(dbs.meta, key: Schema.Meta.compactedBefore, value: Schema.u64(end.rawValue))
                // The sums in the views do not change; only the per-kind event counts do.
                if !kindDelta.isEmpty {
                    let snapshot = views.withLock { view in
                        var copy = view
                        Self.apply(kindDelta, to: &copy)
                        return copy
                    }
                    try writeCheckpoint(Schema.u64(seq) + ViewCodec.encode(snapshot), txn)
                }
            }
            views.withLock { Self.apply(kindDelta, to: &$0) }
        }
        compactedBefore = end
        // The pages this step freed are room at once.
        refreshFullness()
        return CompactionReport(
            horizon: end, eventsRemoved: removed, aggregatesWritten: written, bytesBefore: bytesBefore,
            bytesAfter: env.usedBytes())
    }

    static func apply(_ kindDelta: [String: Int64], to view: inout ViewState) {
        for (kind, delta) in kindDelta {
            let next = Int64(view.eventsByKind[kind] ?? 0) + delta
            view.eventsByKind[kind] = next > 0 ? UInt64(next) : nil
        }
    }
}
