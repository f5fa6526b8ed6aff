import EventLog

/// Messages of the event-streaming protocol, carried in TCP frames between two peers
/// (DESIGN §3, "Dissemination" and "Anti-entropy").
///
/// A stream opens with `hello` (who I am, what I have per origin); then each side pushes
/// `events` as they commit and answers with `ack` (its per-origin watermarks). Repair runs in
/// `reconcile` rounds identified by a session number and ends with `fetch`/`events` for exactly
/// the ids the rounds found missing.
public enum SyncMessage: Hashable, Sendable {
    case hello(node: String, watermarks: [NodeID: HLCTimestamp])
    /// Encoded events, verbatim as stored at their origin (so digests agree everywhere).
    case events([[UInt8]])
    case ack(watermarks: [NodeID: HLCTimestamp])
    case reconcile(session: UInt64, window: Reconciliation.Window, items: [Reconciliation.Item])
    case fetch(session: UInt64, ids: [EventID])
}

/// Binary layout of `SyncMessage`: a version byte, a type byte, then the fields with
/// `ByteWriter`'s primitives. Decoding never traps; hostile counts are refused before
/// allocating.
public enum SyncCodec {
    public static let version: UInt8 = 1

    enum Tag: UInt8 {
        case hello = 1, events, ack, reconcile, fetch
    }

    enum ItemTag: UInt8 {
        case fingerprint = 1, open, ids
    }

    public static func encode(_ message: SyncMessage) -> [UInt8] {
        var w = ByteWriter(capacity: 256)
        w.write(version)
        switch message {
        case .hello(let node, let watermarks):
            w.write(Tag.hello.rawValue)
            w.write(node)
            write(watermarks, &w)
        case .events(let events):
            w.write(Tag.events.rawValue)
            w.write(varint: UInt64(events.count))
            for e in events { w.write(bytes: e) }
        case .ack(let watermarks):
            w.write(Tag.ack.rawValue)
            write(watermarks, &w)
        case .reconcile(let session, let window, let items):
            w.write(Tag.reconcile.rawValue)
            w.write(varint: session)
            w.write(bigEndian: window.compactedBefore.rawValue)
            w.write(bigEndian: window.settledBefore.rawValue)
            w.write(varint: UInt64(items.count))
            for item in items { write(item, &w) }
        case .fetch(let session, let ids):
            w.write(Tag.fetch.rawValue)
            w.write(varint: session)
            w.write(varint: UInt64(ids.count))
            for id in ids { write(id, &w) }
        }
        return w.bytes
    }

    /// Encoded size of one reconciliation item (for byte accounting and message budgets).
    public static func size(of item: Reconciliation.Item) -> Int {
        var w = ByteWriter(capacity: 64)
        write(item, &w)
        return w.bytes.count
    }

    private static func write(_ watermarks: [NodeID: HLCTimestamp], _ w: inout ByteWriter) {
        w.write(varint: UInt64(watermarks.count))
        for origin in watermarks.keys.sorted() {
            w.write(bigEndian: origin.rawValue)
            w.write(bigEndian: watermarks[origin]!.rawValue)
        }
    }

    private static func write(_ id: EventID, _ w: inout ByteWriter) {
        w.write(bigEndian: id.hlc.rawValue)
        w.write(bigEndian: id.origin.rawValue)
    }

    private static func write(_ key: DigestKey, _ w: inout ByteWriter) {
        w.write(key.level)
        w.write(varint: key.bucket)
    }

    private static func write(_ item: Reconciliation.Item, _ w: inout ByteWriter) {
        switch item {
        case .fingerprint(let key, let fp):
            w.write(ItemTag.fingerprint.rawValue)
            write(key, &w)
            for byte in fp.bytes { w.write(byte) }
        case .open(let key):
            w.write(ItemTag.open.rawValue)
            write(key, &w)
        case .ids(let key, let ids):
            w.write(ItemTag.ids.rawValue)
            write(key, &w)
            w.write(varint: UInt64(ids.count))
            for id in ids { write(id, &w) }
        }
    }

    public static func decode(_ bytes: [UInt8]) throws(DecodingError) -> SyncMessage {
        do {
            return try bytes.withUnsafeBytes { buffer in try decode(buffer) }
        } catch let error as DecodingError {
            throw error
        } catch {
            preconditionFailure("SyncCodec.decode threw \(error)")
        }
    }

    public static func decode(_ buffer: UnsafeRawBufferPointer) throws(DecodingError) -> SyncMessage {
        var r = ByteReader(buffer)
        let v = try r.readByte("version")
        guard v == version else {
            throw DecodingError(
                offset: 0, reason: "unsupported sync message version \(v) (this build speaks \(version))")
        }
        let tagOffset = r.offset
        guard let tag = Tag(rawValue: try r.readByte("type")) else {
            throw DecodingError(offset: tagOffset, reason: "unknown sync message type \(buffer[tagOffset])")
        }
        switch tag {
        case .hello:
            return .hello(node: try r.readString("node"), watermarks: try readWatermarks(&r))
        case .events:
            let count = try readCount(&r, minimumBytesEach: 1, "events")
            var events: [[UInt8]] = []
            events.reserveCapacity(count)
            for _ in 0..<count { events.append(try r.readBytes("event")) }
            return .events(events)
        case .ack:
            return .ack(watermarks: try readWatermarks(&r))
        case .reconcile:
            let session = try r.readVarint("session")
            let window = Reconciliation.Window(
                compactedBefore: HLCTimestamp(rawValue: try r.readBigEndianUInt64("compacted_before")),
                settledBefore: HLCTimestamp(rawValue: try r.readBigEndianUInt64("settled_before")))
            let count = try readCount(&r, minimumBytesEach: 3, "items")
            var items: [Reconciliation.Item] = []
            items.reserveCapacity(count)
            for _ in 0..<count { items.append(try readItem(&r)) }
            return .reconcile(session: session, window: window, items: items)
        case .fetch:
            let session = try r.readVarint("session")
            let count = try readCount(&r, minimumBytesEach: EventID.byteCount, "ids")
            var ids: [EventID] = []
            ids.reserveCapacity(count)
            for _ in 0..<count { ids.append(try readID(&r)) }
            return .fetch(session: session, ids: ids)
        }
    }

    /// Reads a count and refuses one the remaining bytes cannot possibly hold.
    private static func readCount(
        _ r: inout ByteReader, minimumBytesEach: Int, _ what: String
    ) throws(DecodingError)
        -> Int
    {
        let start = r.offset
        let count = try r.readVarint(what)
        guard count <= UInt64(r.remaining / max(1, minimumBytesEach)) else {
            throw DecodingError(
                offset: start, reason: "truncated: \(what) claims \(count) entries, \(r.remaining) bytes left")
        }
        return Int(count)
    }

    private static func readWatermarks(_ r: inout ByteReader) throws(DecodingError) -> [NodeID: HLCTimestamp] {
        let count = try readCount(&r, minimumBytesEach: 16, "watermarks")
        var out: [NodeID: HLCTimestamp] = [:]
        for _ in 0..<count {
            out[NodeID(rawValue: try r.readBigEndianUInt64("origin"))] = HLCTimestamp(
                rawValue: try r.readBigEndianUInt64("watermark"))
        }
        return out
    }

    private static func readID(_ r: inout ByteReader) throws(DecodingError) -> EventID {
        EventID(
            hlc: HLCTimestamp(rawValue: try r.readBigEndianUInt64("hlc")),
            origin: NodeID(rawValue: try r.readBigEndianUInt64("origin")))
    }

    private static func readKey(_ r: inout ByteReader) throws(DecodingError) -> DigestKey {
        let levelOffset = r.offset
        let level = try r.readByte("level")
        guard level <= DigestKey.topLevel || level == DigestKey.rootLevel else {
            throw DecodingError(offset: levelOffset, reason: "digest level \(level) does not exist")
        }
        return DigestKey(level: level, bucket: try r.readVarint("bucket"))
    }

    private static func readItem(_ r: inout ByteReader) throws(DecodingError) -> Reconciliation.Item {
        let tagOffset = r.offset
        guard let tag = ItemTag(rawValue: try r.readByte("item")) else {
            throw DecodingError(offset: tagOffset, reason: "unknown reconciliation item \(r.buffer[tagOffset])")
        }
        let key = try readKey(&r)
        switch tag {
        case .fingerprint:
            let start = r.offset
            guard r.remaining >= Fingerprint.encodedSize else {
                throw DecodingError(
                    offset: start, reason: "truncated: fingerprint needs \(Fingerprint.encodedSize) bytes")
            }
            var raw: [UInt8] = []
            for _ in 0..<Fingerprint.encodedSize { raw.append(try r.readByte()) }
            let fp = raw.withUnsafeBytes { Fingerprint(bytes: $0) }!
            return .fingerprint(key, fp)
        case .open:
            return .open(key)
        case .ids:
            let count = try readCount(&r, minimumBytesEach: EventID.byteCount, "ids")
            var ids: [EventID] = []
            ids.reserveCapacity(count)
            for _ in 0..<count { ids.append(try readID(&r)) }
            return .ids(key, ids)
        }
    }
}
