/// The stable binary encoding of an event: the LMDB value, the bytes that are hashed into
/// digests, and the unit sent between peers.
///
/// ```
///  0         1        2                10               18
///  +---------+--------+----------------+----------------+---------------------+
///  | version | kind   | hlc (BE u64)   | origin (BE u64)| payload (per kind)  |
///  +---------+--------+----------------+----------------+---------------------+
/// ```
///
/// Payload fields use LEB128 varints, big-endian IEEE doubles and varint-length-prefixed UTF-8
/// strings, in the order of the payload struct. Extension rule: a newer version may append
/// fields at the end of a payload; decoders ignore trailing bytes of a known kind, and keep the
/// whole payload of an unknown kind verbatim.
public enum EventCodec {
    public static let version: UInt8 = 1
    public static let headerSize = 18

    public static func encode(_ event: Event) -> [UInt8] {
        var writer = ByteWriter(capacity: 96)
        encode(event, into: &writer)
        return writer.bytes
    }

    public static func encode(_ event: Event, into w: inout ByteWriter) {
        w.write(version)
        w.write(event.payload.kindByte)
        w.write(bigEndian: event.id.hlc.rawValue)
        w.write(bigEndian: event.id.origin.rawValue)
        switch event.payload {
        case .rateLimitIncrement(let p):
            w.write(p.keys)
            w.write(varint: p.windowStartMillis)
            w.write(varint: UInt64(p.windowMillis))
            w.write(varint: UInt64(p.requests))
        case .usageRecorded(let p):
            w.write(p.requestID)
            w.write(p.keyID)
            w.write(p.model)
            w.write(p.limitKeys)
            w.write(varint: p.windowStartMillis)
            w.write(varint: UInt64(p.windowMillis))
            w.write(varint: UInt64(p.tokensIn))
            w.write(varint: UInt64(p.tokensOut))
            w.write(varint: UInt64(p.latencyMicros))
            w.write(varint: UInt64(p.status))
            w.write(p.outcome.rawValue)
            // Appended in schema 2: the token classes and the cost.
            w.write(varint: UInt64(p.cacheReadTokens))
            w.write(varint: UInt64(p.cacheWriteTokens))
            w.write(varint: UInt64(p.reasoningTokens))
            if let cost = p.costMicros {
                w.write(UInt8(1))
                w.write(varint: cost)
            } else {
                w.write(UInt8(0))
            }
            w.write(p.priceVersion)
        case .weightChanged(let p):
            w.write(p.keyID)
            w.write(p.oldWeight)
            w.write(p.newWeight)
            w.write(p.reason)
            w.write(p.actor)
        case .configUpdated(let p):
            w.write(bytes: p.document)
            w.write(p.author)
            w.write(bytes: p.signerKey)
            w.write(bytes: p.signature)
        case .membershipChanged(let p):
            w.write(p.node)
            w.write(p.state.rawValue)
            w.write(varint: p.incarnation)
            w.write(p.observer)
            w.write(p.address)
        case .alertFired(let p):
            w.write(p.rule)
            w.write(p.scope)
            w.write(p.firing)
            w.write(p.value)
            w.write(p.action)
            w.write(p.detail)
        case .usageAggregated(let p):
            w.write(p.keyID)
            w.write(p.model)
            w.write(p.limitKeys)
            w.write(varint: p.windowStartMillis)
            w.write(varint: UInt64(p.windowMillis))
            let s = p.summary
            for v in [s.requests, s.errors, s.tokensIn, s.tokensOut, s.latencySumMicros, s.latencyMaxMicros] {
                w.write(varint: v)
            }
            w.write(varint: UInt64(s.latencyBuckets.count))
            for v in s.latencyBuckets { w.write(varint: v) }
            // Appended in schema 2: the token classes and the cost.
            for v in [s.cacheReadTokens, s.cacheWriteTokens, s.reasoningTokens, s.costMicros, s.unpricedRequests] {
                w.write(varint: v)
            }
        case .unknown(_, let bytes):
            w.write(bytes: bytes)
        }
    }

    public static func decode(_ bytes: [UInt8]) throws(DecodingError) -> Event {
        do {
            return try bytes.withUnsafeBytes { buffer in try decode(buffer) }
        } catch let error as DecodingError {
            throw error
        } catch {
            preconditionFailure("EventCodec.decode threw a non-DecodingError: \(error)")
        }
    }

    /// Reads just the id and kind from an encoded event, without decoding the payload.
    public static func peekHeader(_ buffer: UnsafeRawBufferPointer) throws(DecodingError) -> (EventID, UInt8) {
        var r = ByteReader(buffer)
        let version = try r.readByte("version")
        guard version == Self.version else {
            throw DecodingError(
                offset: 0, reason: "unsupported event format version \(version) (this build reads \(Self.version))")
        }
        let kind = try r.readByte("kind")
        let hlc = try r.readBigEndianUInt64("hlc")
        let origin = try r.readBigEndianUInt64("origin")
        return (EventID(hlc: HLCTimestamp(rawValue: hlc), origin: NodeID(rawValue: origin)), kind)
    }

    public static func decode(_ buffer: UnsafeRawBufferPointer) throws(DecodingError) -> Event {
        let (id, kindByte) = try peekHeader(buffer)
        var r = ByteReader(buffer)
        _ = try r.readByte()
        _ = try r.readByte()
        _ = try r.readBigEndianUInt64()
        _ = try r.readBigEndianUInt64()
        guard let kind = EventKind(rawValue: kindByte) else {
            return Event(id: id, payload: .unknown(kind: kindByte, bytes: try r.readBytes("unknown payload")))
        }
        let payload: Event.Payload
        switch kind {
        case .rateLimitIncrement:
            payload = .rateLimitIncrement(
                RateLimitIncrement(
                    keys: try r.readStrings("keys"),
                    windowStartMillis: try r.readVarint("window_start"),
                    windowMillis: try r.readVarint(UInt32.self, "window"),
                    requests: try r.readVarint(UInt32.self, "requests")))
        case .usageRecorded:
            let requestID = try r.readString("request_id")
            let keyID = try r.readString("key_id")
            let model = try r.readString("model")
            let limitKeys = try r.readStrings("limit_keys")
            let windowStart = try r.readVarint("window_start")
            let window = try r.readVarint(UInt32.self, "window")
            let tokensIn = try r.readVarint(UInt32.self, "tokens_in")
            let tokensOut = try r.readVarint(UInt32.self, "tokens_out")
            let latency = try r.readVarint(UInt32.self, "latency_us")
            let status = try r.readVarint(UInt16.self, "status")
            let outcomeOffset = r.offset
            let outcomeByte = try r.readByte("outcome")
            guard let outcome = UsageOutcome(rawValue: outcomeByte) else {
                throw DecodingError(offset: outcomeOffset, reason: "unknown usage outcome \(outcomeByte)")
            }
            var usage = UsageRecorded(
                requestID: requestID, keyID: keyID, model: model, limitKeys: limitKeys,
                windowStartMillis: windowStart, windowMillis: window, tokensIn: tokensIn, tokensOut: tokensOut,
                latencyMicros: latency, status: status, outcome: outcome)
            if r.remaining > 0 {
                usage.cacheReadTokens = try r.readVarint(UInt32.self, "cache_read_tokens")
                usage.cacheWriteTokens = try r.readVarint(UInt32.self, "cache_write_tokens")
                usage.reasoningTokens = try r.readVarint(UInt32.self, "reasoning_tokens")
                if try r.readByte("priced") != 0 { usage.costMicros = try r.readVarint("cost_micro_usd") }
                usage.priceVersion = try r.readString("price_version")
            }
            payload = .usageRecorded(usage)
        case .weightChanged:
            payload = .weightChanged(
                WeightChanged(
                    keyID: try r.readString("key_id"), oldWeight: try r.readDouble("old_weight"),
                    newWeight: try r.readDouble("new_weight"), reason: try r.readString("reason"),
                    actor: try r.readString("actor")))
        case .configUpdated:
            payload = .configUpdated(
                ConfigUpdated(
                    document: try r.readBytes("document"), author: try r.readString("author"),
                    signerKey: try r.readBytes("signer_key"), signature: try r.readBytes("signature")))
        case .membershipChanged:
            let node = try r.readString("node")
            let stateOffset = r.offset
            let stateByte = try r.readByte("state")
            guard let state = MemberState(rawValue: stateByte) else {
                throw DecodingError(offset: stateOffset, reason: "unknown member state \(stateByte)")
            }
            payload = .membershipChanged(
                MembershipChanged(
                    node: node, state: state, incarnation: try r.readVarint("incarnation"),
                    observer: try r.readString("observer"), address: try r.readString("address")))
        case .alertFired:
            payload = .alertFired(
                AlertFired(
                    rule: try r.readString("rule"), scope: try r.readString("scope"), firing: try r.readBool("firing"),
                    value: try r.readDouble("value"), action: try r.readString("action"),
                    detail: try r.readString("detail")))
        case .usageAggregated:
            let keyID = try r.readString("key_id")
            let model = try r.readString("model")
            let limitKeys = try r.readStrings("limit_keys")
            let windowStart = try r.readVarint("window_start")
            let window = try r.readVarint(UInt32.self, "window")
            var s = UsageSummary()
            s.requests = try r.readVarint("requests")
            s.errors = try r.readVarint("errors")
            s.tokensIn = try r.readVarint("tokens_in")
            s.tokensOut = try r.readVarint("tokens_out")
            s.latencySumMicros = try r.readVarint("latency_sum_us")
            s.latencyMaxMicros = try r.readVarint("latency_max_us")
            let bucketsOffset = r.offset
            let buckets = try r.readVarint("bucket_count")
            guard buckets == UInt64(UsageSummary.bucketCount) else {
                throw DecodingError(
                    offset: bucketsOffset,
                    reason: "expected \(UsageSummary.bucketCount) latency buckets, found \(buckets)")
            }
            for i in 0..<UsageSummary.bucketCount { s.latencyBuckets[i] = try r.readVarint("latency_bucket") }
            if r.remaining > 0 {
                s.cacheReadTokens = try r.readVarint("cache_read_tokens")
                s.cacheWriteTokens = try r.readVarint("cache_write_tokens")
                s.reasoningTokens = try r.readVarint("reasoning_tokens")
                s.costMicros = try r.readVarint("cost_micro_usd")
                s.unpricedRequests = try r.readVarint("unpriced_requests")
            }
            payload = .usageAggregated(
                UsageAggregated(
                    keyID: keyID, model: model, limitKeys: limitKeys, windowStartMillis: windowStart,
                    windowMillis: window, summary: s))
        }
        return Event(id: id, payload: payload)
    }
}
