/// Deterministic binary encoding of `ViewState`, used for checkpoints in `meta` and for
/// comparing views byte for byte. Map entries are written in sorted key order, so equal views
/// encode to equal bytes. Events inside registers reuse `EventCodec`.
public enum ViewCodec {
    /// 2 adds `retainMillis` (0 for none) after the performance window; 3 adds the token
    /// classes and the cost to each performance summary, and the spend counters at the end.
    /// Earlier versions still decode.
    public static let version: UInt8 = 3

    public static func encode(_ v: ViewState) -> [UInt8] {
        var w = ByteWriter(capacity: 4096)
        w.write(version)
        w.write(varint: v.settings.performanceWindowMillis)
        w.write(varint: v.settings.retainMillis ?? 0)
        writeCounters(v.limitCounters, &w)
        writeCounters(v.tokenCounters, &w)
        w.write(varint: UInt64(v.weights.count))
        for key in v.weights.keys.sorted() {
            let e = v.weights[key]!
            EventCodecBytes.write(Event(id: e.event, payload: .weightChanged(e.value)), &w)
        }
        w.write(v.config != nil)
        if let c = v.config { EventCodecBytes.write(Event(id: c.event, payload: .configUpdated(c.value)), &w) }
        w.write(varint: UInt64(v.keyPerformance.count))
        for key in v.keyPerformance.keys.sorted() {
            let s = v.keyPerformance[key]!
            w.write(key.keyID)
            w.write(varint: key.windowStartMillis)
            for x in [s.requests, s.errors, s.tokensIn, s.tokensOut, s.latencySumMicros, s.latencyMaxMicros] {
                w.write(varint: x)
            }
            for x in s.latencyBuckets { w.write(varint: x) }
            for x in [s.cacheReadTokens, s.cacheWriteTokens, s.reasoningTokens, s.costMicros, s.unpricedRequests] {
                w.write(varint: x)
            }
        }
        w.write(varint: UInt64(v.alerts.count))
        for key in v.alerts.keys.sorted() {
            let a = v.alerts[key]!
            EventCodecBytes.write(Event(id: a.event, payload: .alertFired(a.value)), &w)
        }
        w.write(varint: UInt64(v.members.count))
        for key in v.members.keys.sorted() {
            let m = v.members[key]!
            EventCodecBytes.write(Event(id: m.event, payload: .membershipChanged(m.value)), &w)
        }
        w.write(varint: UInt64(v.eventsByKind.count))
        for key in v.eventsByKind.keys.sorted() {
            w.write(key)
            w.write(varint: v.eventsByKind[key]!)
        }
        w.write(varint: v.rejectedConfigs)
        w.write(v.lastEvent != nil)
        if let last = v.lastEvent {
            w.write(bigEndian: last.hlc.rawValue)
            w.write(bigEndian: last.origin.rawValue)
        }
        writeCounters(v.spend, &w)
        return w.bytes
    }

    private static func writeCounters(_ map: [CounterKey: OriginCounts], _ w: inout ByteWriter) {
        w.write(varint: UInt64(map.count))
        for key in map.keys.sorted() {
            w.write(key.limitKey)
            w.write(varint: UInt64(key.windowMillis))
            w.write(varint: key.windowStartMillis)
            let entries = map[key]!.entries
            w.write(varint: UInt64(entries.count))
            for e in entries {
                w.write(bigEndian: e.origin.rawValue)
                w.write(varint: e.count)
            }
        }
    }

    public static func decode(_ bytes: [UInt8], settings: ViewSettings) throws(DecodingError) -> ViewState {
        do {
            return try bytes.withUnsafeBytes { buffer in try decode(buffer, settings: settings) }
        } catch let e as DecodingError {
            throw e
        } catch {
            preconditionFailure("ViewCodec.decode threw \(error)")
        }
    }

    public static func decode(
        _ buffer: UnsafeRawBufferPointer, settings: ViewSettings
    ) throws(DecodingError)
        -> ViewState
    {
        var r = ByteReader(buffer)
        let v = try r.readByte("view version")
        guard (1...version).contains(v) else {
            throw DecodingError(offset: 0, reason: "unsupported view checkpoint version \(v)")
        }
        var s = settings
        s.performanceWindowMillis = try r.readVarint("performance window")
        if v >= 2 {
            let retain = try r.readVarint("retained window span")
            s.retainMillis = retain == 0 ? nil : retain
        } else {
            s.retainMillis = nil
        }
        var view = ViewState(settings: s)
        view.limitCounters = try readCounters(&r)
        view.tokenCounters = try readCounters(&r)
        for _ in 0..<(try r.readVarint("weights")) {
            let e = try EventCodecBytes.read(&r)
            guard case .weightChanged(let p) = e.payload else {
                throw DecodingError(offset: r.offset, reason: "weight entry is \(e.payload.kindName)")
            }
            view.weights[p.keyID] = LWW(value: p, event: e.id)
        }
        if try r.readBool("config present") {
            let e = try EventCodecBytes.read(&r)
            guard case .configUpdated(let p) = e.payload else {
                throw DecodingError(offset: r.offset, reason: "config entry is \(e.payload.kindName)")
            }
            view.config = LWW(value: p, event: e.id)
        }
        for _ in 0..<(try r.readVarint("performance")) {
            let key = PerformanceKey(keyID: try r.readString("key_id"), windowStartMillis: try r.readVarint("window"))
            var summary = UsageSummary()
            summary.requests = try r.readVarint()
            summary.errors = try r.readVarint()
            summary.tokensIn = try r.readVarint()
            summary.tokensOut = try r.readVarint()
            summary.latencySumMicros = try r.readVarint()
            summary.latencyMaxMicros = try r.readVarint()
            for i in 0..<UsageSummary.bucketCount { summary.latencyBuckets[i] = try r.readVarint() }
            if v >= 3 {
                summary.cacheReadTokens = try r.readVarint("cache_read_tokens")
                summary.cacheWriteTokens = try r.readVarint("cache_write_tokens")
                summary.reasoningTokens = try r.readVarint("reasoning_tokens")
                summary.costMicros = try r.readVarint("cost_micro_usd")
                summary.unpricedRequests = try r.readVarint("unpriced_requests")
            }
            view.keyPerformance[key] = summary
        }
        for _ in 0..<(try r.readVarint("alerts")) {
            let e = try EventCodecBytes.read(&r)
            guard case .alertFired(let p) = e.payload else {
                throw DecodingError(offset: r.offset, reason: "alert entry is \(e.payload.kindName)")
            }
            view.alerts[AlertKey(rule: p.rule, scope: p.scope)] = LWW(value: p, event: e.id)
        }
        for _ in 0..<(try r.readVarint("members")) {
            let e = try EventCodecBytes.read(&r)
            guard case .membershipChanged(let p) = e.payload else {
                throw DecodingError(offset: r.offset, reason: "member entry is \(e.payload.kindName)")
            }
            view.members[p.node] = LWW(value: p, event: e.id)
        }
        for _ in 0..<(try r.readVarint("kinds")) {
            let name = try r.readString("kind")
            view.eventsByKind[name] = try r.readVarint("kind count")
        }
        view.rejectedConfigs = try r.readVarint("rejected configs")
        if try r.readBool("last event present") {
            view.lastEvent = EventID(
                hlc: HLCTimestamp(rawValue: try r.readBigEndianUInt64()),
                origin: NodeID(rawValue: try r.readBigEndianUInt64()))
        }
        if v >= 3 { view.spend = try readCounters(&r) }
        return view
    }

    private static func readCounters(_ r: inout ByteReader) throws(DecodingError) -> [CounterKey: OriginCounts] {
        var map: [CounterKey: OriginCounts] = [:]
        for _ in 0..<(try r.readVarint("counters")) {
            let key = CounterKey(
                limitKey: try r.readString("limit key"), windowMillis: try r.readVarint(UInt32.self, "window"),
                windowStartMillis: try r.readVarint("window start"))
            var counts: [NodeID: UInt64] = [:]
            for _ in 0..<(try r.readVarint("origins")) {
                counts[NodeID(rawValue: try r.readBigEndianUInt64("origin"))] = try r.readVarint("count")
            }
            map[key] = OriginCounts(counts)
        }
        return map
    }
}

/// Length-prefixed events nested inside another encoding.
enum EventCodecBytes {
    static func write(_ event: Event, _ w: inout ByteWriter) {
        w.write(bytes: EventCodec.encode(event))
    }

    static func read(_ r: inout ByteReader) throws(DecodingError) -> Event {
        let start = r.offset
        let bytes = try r.readBytes("nested event")
        do {
            return try EventCodec.decode(bytes)
        } catch {
            throw DecodingError(offset: start + error.offset, reason: error.reason)
        }
    }
}
