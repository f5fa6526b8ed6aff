import CLMDB
import Foundation

/// Which events a scan visits.
public struct EventFilter: Sendable {
    /// HLC interval, inclusive on both ends.
    public var since: HLCTimestamp = .zero
    public var until: HLCTimestamp = .max
    /// Kind bytes to keep; nil keeps every kind.
    public var kinds: Set<UInt8>?
    public var origins: Set<NodeID>?
    public var limit: Int?

    public init(
        since: HLCTimestamp = .zero, until: HLCTimestamp = .max, kinds: Set<UInt8>? = nil, origins: Set<NodeID>? = nil,
        limit: Int? = nil
    ) {
        self.since = since
        self.until = until
        self.kinds = kinds
        self.origins = origins
        self.limit = limit
    }

    public static let all = EventFilter()

    /// Whether an event with this id and kind byte passes the time, origin and kind filters
    /// (`limit` is the scan's business).
    public func matches(_ id: EventID, kind: UInt8) -> Bool {
        id.hlc >= since && id.hlc <= until && (origins?.contains(id.origin) ?? true)
            && (kinds?.contains(kind) ?? true)
    }
}

/// What an origin has contributed to this log.
public struct OriginWatermark: Hashable, Sendable {
    /// The greatest HLC stored from this origin (there may be gaps below it until anti-entropy
    /// fills them).
    public var maxHLC: HLCTimestamp
    public var count: UInt64

    mutating func merge(_ other: OriginWatermark) {
        maxHLC = max(maxHLC, other.maxHLC)
        count += other.count
    }
}

/// Summary of a log, as printed by `bifrost-dump --stats`.
public struct LogStats: Sendable {
    public var events: UInt64
    public var byKind: [String: UInt64]
    public var byOrigin: [NodeID: UInt64]
    public var firstHLC: HLCTimestamp?
    public var lastHLC: HLCTimestamp?
    public var root: Fingerprint
    public var nodeName: String?
    public var usedBytes: Int
    public var checkpointSeq: UInt64?
    public var compactedBefore: HLCTimestamp?
}

/// A stored digest node that disagrees with the one recomputed from the events.
public struct DigestMismatch: Hashable, Sendable, CustomStringConvertible {
    public var key: DigestKey
    public var stored: Fingerprint
    public var recomputed: Fingerprint
    public var description: String { "\(key): stored \(stored), recomputed \(recomputed)" }
}

/// Read access to a data directory: scans, digests, statistics, watermarks and replay. Safe to
/// use from any thread and from another process while a node writes (LMDB readers never block
/// the writer and see a consistent snapshot).
public final class EventLogReader: Sendable {
    public let path: String
    let env: LMDBEnvironment
    let dbs: Databases

    init(path: String, env: LMDBEnvironment, dbs: Databases) {
        self.path = path
        self.env = env
        self.dbs = dbs
    }

    /// Opens an existing data directory read-only (the tools' path).
    public static func open(directory: String) throws(EventLogError) -> EventLogReader {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDir) else {
            var info = stat()
            if stat(directory, &info) != 0 && errno == EACCES {
                throw EventLogError(
                    .permissionDenied, path: directory,
                    "permission denied on the way to it: run this as the user the node runs as, or with sudo")
            }
            throw EventLogError(
                .notFound, path: directory, "no such data directory; pass the --data dir of a bifrost node")
        }
        guard isDir.boolValue else {
            throw EventLogError(.notOurs, path: directory, "not a Bifrost data directory (it is a file)")
        }
        // A directory this user cannot search looks empty; say so rather than "not ours".
        for path in [directory, directory + "/data.mdb"] where access(path, R_OK) != 0 && errno == EACCES {
            throw EventLogError(
                .permissionDenied, path: path,
                "permission denied: data directories are owner-only (0700); run this as the user the node runs as, or with sudo"
            )
        }
        guard FileManager.default.fileExists(atPath: directory + "/data.mdb") else {
            throw EventLogError(.notOurs, path: directory, "not a Bifrost data directory (no data.mdb inside)")
        }
        var options = LMDBEnvironment.Options()
        options.readOnly = true
        let env: LMDBEnvironment
        let dbs: Databases
        do {
            env = try LMDBEnvironment(path: directory, options: options)
            dbs = try Databases(env: env, create: false)
        } catch let error as LMDBError where error.code == EACCES {
            throw EventLogError(
                .permissionDenied, path: directory,
                "permission denied (\(error.message)): run this as the user the node runs as, or with sudo")
        } catch let error as LMDBError {
            throw EventLogError(.notOurs, path: directory, "not a Bifrost data directory (\(error.message))")
        } catch {
            throw EventLogError(.storage, path: directory, "\(error)")
        }
        let reader = EventLogReader(path: directory, env: env, dbs: dbs)
        let tag = try? reader.metaString(Schema.Meta.format)
        guard tag == Schema.formatTag else {
            throw EventLogError(
                .notOurs, path: directory,
                "not a Bifrost data directory (format tag \(tag.map { "'\($0)'" } ?? "missing"))")
        }
        return reader
    }

    func metaString(_ key: [UInt8]) throws -> String? {
        try env.read { txn in try txn.get(dbs.meta, key: key).map { String(decoding: $0, as: UTF8.self) } }
    }

    func metaU64(_ key: [UInt8]) throws -> UInt64? {
        try env.read { txn in
            try key.withUnsafeBytes { k in
                try txn.get(dbs.meta, key: k).flatMap { $0.count == 8 ? Schema.u64($0) : nil }
            }
        }
    }

    /// The name of the node that owns this directory.
    public func nodeName() throws -> String? { try metaString(Schema.Meta.nodeName) }

    /// HLC below which compaction may have replaced events by aggregates.
    public func compactedBefore() throws -> HLCTimestamp? {
        try metaU64(Schema.Meta.compactedBefore).map(HLCTimestamp.init(rawValue:))
    }

    /// Names of every origin this log knows (its own, and nodes seen in membership events).
    public func nodeNames() throws -> [NodeID: String] {
        try env.read { txn in
            var names: [NodeID: String] = [:]
            try txn.scan(dbs.names) { key, value in
                if key.count == 8 { names[NodeID(rawValue: Schema.u64(key))] = String(decoding: value, as: UTF8.self) }
                return true
            }
            return names
        }
    }

    /// Resolves `--origin` arguments: a node name, or 16 hex digits.
    public func resolveOrigin(_ text: String) throws -> NodeID {
        if let id = NodeID(hex: text) { return id }
        return NodeID(name: text)
    }

    public func event(_ id: EventID) throws -> Event? {
        try env.read { txn in
            try id.bytes.withUnsafeBytes { k in try txn.get(dbs.events, key: k).map { try EventCodec.decode($0) } }
        }
    }

    /// Bytes used by the data file (cheap: no scan).
    public func usedBytes() -> Int { env.usedBytes() }

    /// `usedBytes()` less the pages on LMDB's free list, which new writes reuse first.
    public func liveBytes() throws -> Int { try env.liveBytes() }

    /// Number of stored events (cheap: LMDB keeps the count).
    public func eventCount() throws -> UInt64 { UInt64(try env.read { txn in try txn.count(dbs.events) }) }

    /// The stored bytes of one event.
    public func encodedEvent(_ id: EventID) throws -> [UInt8]? {
        try env.read { txn in try id.bytes.withUnsafeBytes { k in try txn.get(dbs.events, key: k).map { Array($0) } } }
    }

    /// Visits matching events in HLC order with their stored bytes, until `body` returns false.
    /// Returns the newest insertion sequence number of the snapshot it read, so a follower can
    /// go on from exactly there (`scanInserted(after:)`).
    @discardableResult
    public func scanRaw(
        _ filter: EventFilter = .all, _ body: (EventID, UInt8, UnsafeRawBufferPointer) throws -> Bool
    )
        throws -> UInt64
    {
        try env.read { txn in
            var seen = 0
            let start = EventID(hlc: filter.since, origin: NodeID(rawValue: 0)).bytes
            try txn.scan(dbs.events, from: start) { key, value in
                guard let id = EventID(key: key) else { return true }
                if id.hlc > filter.until { return false }
                let kind = value.count > 1 ? value[1] : 0
                guard filter.matches(id, kind: kind) else { return true }
                if let limit = filter.limit, seen >= limit { return false }
                seen += 1
                return try body(id, kind, value)
            }
            return try txn.lastKey(dbs.log).map { $0.withUnsafeBytes { Schema.u64($0) } } ?? 0
        }
    }

    /// Visits matching events, decoded, in HLC order; returns what `scanRaw` returns.
    @discardableResult
    public func scan(_ filter: EventFilter = .all, _ body: (Event) throws -> Bool) throws -> UInt64 {
        try scanRaw(filter) { _, _, bytes in try body(try EventCodec.decode(bytes)) }
    }

    public func events(_ filter: EventFilter = .all) throws -> [Event] {
        var out: [Event] = []
        try scan(filter) {
            out.append($0); return true
        }
        return out
    }

    /// Per-origin watermarks (greatest HLC and count), the start of every catch-up.
    public func watermarks() throws -> [NodeID: OriginWatermark] {
        try env.read { txn in
            var out: [NodeID: OriginWatermark] = [:]
            try txn.scan(dbs.origins) { key, value in
                if key.count == 8, value.count == 16 {
                    out[NodeID(rawValue: Schema.u64(key))] = OriginWatermark(
                        maxHLC: HLCTimestamp(rawValue: Schema.u64(value)), count: Schema.u64(value, at: 8))
                }
                return true
            }
            return out
        }
    }

    /// The stored fingerprint of one digest node.
    public func digest(_ key: DigestKey) throws -> Fingerprint {
        try env.read { txn in
            try key.bytes.withUnsafeBytes { k in try txn.get(dbs.digests, key: k).flatMap(Fingerprint.init(bytes:)) }
        } ?? .zero
    }

    /// Stored digest nodes of one level within `[from, to]` buckets.
    public func digests(level: UInt8, buckets: ClosedRange<UInt64>) throws -> [(DigestKey, Fingerprint)] {
        try env.read { txn in
            var out: [(DigestKey, Fingerprint)] = []
            try txn.scan(dbs.digests, from: DigestKey(level: level, bucket: buckets.lowerBound).bytes) { k, v in
                guard let key = DigestKey(bytes: k), key.level == level, key.bucket <= buckets.upperBound else {
                    return false
                }
                if let fp = Fingerprint(bytes: v), fp.count > 0 { out.append((key, fp)) }
                return true
            }
            return out
        }
    }

    /// Every stored digest node.
    public func storedDigests() throws -> [DigestKey: Fingerprint] {
        try env.read { txn in
            var out: [DigestKey: Fingerprint] = [:]
            try txn.scan(dbs.digests) { k, v in
                if let key = DigestKey(bytes: k), let fp = Fingerprint(bytes: v), fp.count > 0 { out[key] = fp }
                return true
            }
            return out
        }
    }

    /// Recomputes every digest node from the events themselves (the check that the incremental
    /// index is right; never needed on the normal path).
    public func recomputeDigests() throws -> [DigestKey: Fingerprint] {
        var out: [DigestKey: Fingerprint] = [:]
        try scanRaw { id, _, bytes in
            let fp = Fingerprint(eventBytes: bytes)
            for key in DigestKey.path(for: id.hlc) { out[key, default: .zero].add(fp) }
            return true
        }
        return out
    }

    /// Differences between the stored digest index and one recomputed from the events.
    public func verifyDigests() throws -> [DigestMismatch] {
        let stored = try storedDigests()
        let recomputed = try recomputeDigests()
        var out: [DigestMismatch] = []
        for key in Set(stored.keys).union(recomputed.keys).sorted() {
            let s = stored[key] ?? .zero
            let r = recomputed[key] ?? .zero
            if s != r { out.append(DigestMismatch(key: key, stored: s, recomputed: r)) }
        }
        return out
    }

    public func stats() throws -> LogStats {
        let root = try digest(.root)
        let names = try nodeName()
        let compacted = try compactedBefore()
        return try env.read { txn in
            var byKind: [String: UInt64] = [:]
            var byOrigin: [NodeID: UInt64] = [:]
            var first: HLCTimestamp?
            var last: HLCTimestamp?
            var count: UInt64 = 0
            var kindCounts = [UInt64](repeating: 0, count: 256)
            try txn.scan(dbs.events) { key, value in
                guard let id = EventID(key: key) else { return true }
                count += 1
                if first == nil { first = id.hlc }
                last = id.hlc
                byOrigin[id.origin, default: 0] += 1
                if value.count > 1 { kindCounts[Int(value[1])] += 1 }
                return true
            }
            for (byte, n) in kindCounts.enumerated() where n > 0 {
                byKind[EventKind(rawValue: UInt8(byte))?.name ?? "unknown.\(byte)"] = n
            }
            var checkpointSeq: UInt64?
            try Schema.Meta.checkpoint.withUnsafeBytes { k in
                if let v = try txn.get(dbs.meta, key: k), v.count >= 8 { checkpointSeq = Schema.u64(v) }
            }
            return LogStats(
                events: count, byKind: byKind, byOrigin: byOrigin, firstHLC: first, lastHLC: last, root: root,
                nodeName: names, usedBytes: env.usedBytes(), checkpointSeq: checkpointSeq, compactedBefore: compacted)
        }
    }

    /// Folds every event with HLC ≤ `until` into fresh views: the audit path ("as of T").
    public func replay(
        until: HLCTimestamp = .max, settings: ViewSettings = ViewSettings(), progress: ((UInt64) -> Void)? = nil
    ) throws -> ViewState {
        var view = ViewState(settings: settings)
        var n: UInt64 = 0
        try scanRaw(EventFilter(until: until)) { _, _, bytes in
            view.apply(try EventCodec.decode(bytes))
            n += 1
            if n & 0xffff == 0 { progress?(n) }
            return true
        }
        progress?(n)
        return view
    }

    /// Walks the events inserted after `seq`, in insertion order (so an old event that arrived
    /// late from a peer comes when it arrived, not at its HLC), until `body` returns false.
    public func scanInserted(after seq: UInt64, _ body: (_ seq: UInt64, Event) throws -> Bool) throws {
        try env.read { txn in
            try txn.scan(dbs.log, from: Schema.u64(seq + 1)) { key, id in
                guard let bytes = try txn.get(dbs.events, key: id) else { return true }
                return try body(Schema.u64(key), try EventCodec.decode(bytes))
            }
        }
    }

    /// The stored checkpoint: the local insertion seq it covers and the views at that point.
    public func checkpoint(settings: ViewSettings = ViewSettings()) throws -> (seq: UInt64, view: ViewState)? {
        try env.read { txn in
            try Schema.Meta.checkpoint.withUnsafeBytes { k in
                guard let v = try txn.get(dbs.meta, key: k), v.count >= 8 else { return nil }
                let view = try ViewCodec.decode(UnsafeRawBufferPointer(rebasing: v[8...]), settings: settings)
                return (Schema.u64(v), view)
            }
        }
    }

    /// The views as a restarting node rebuilds them: the checkpoint plus the events inserted
    /// after it (by local insertion order, so late-arriving old events are included), or a full
    /// replay when there is no checkpoint.
    public func restoreViews(settings: ViewSettings = ViewSettings()) throws -> (view: ViewState, tail: UInt64) {
        guard let (seq, checkpointView) = try checkpoint(settings: settings) else {
            let view = try replay(settings: settings)
            return (view, view.eventCount)
        }
        var view = checkpointView
        view.settings = settings
        var tail: UInt64 = 0
        try env.read { txn in
            try txn.scan(dbs.log, from: Schema.u64(seq + 1)) { _, key in
                if let bytes = try txn.get(dbs.events, key: key) {
                    view.apply(try EventCodec.decode(bytes))
                    tail += 1
                }
                return true
            }
        }
        return (view, tail)
    }
}
