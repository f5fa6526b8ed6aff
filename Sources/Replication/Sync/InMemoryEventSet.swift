import EventLog

/// A set of encoded events with the same digest tree as the LMDB store: the simulator's storage
/// twin, and the oracle the reconciliation tests compare against.
public struct InMemoryEventSet: DigestSource, Sendable {
    public private(set) var events: [EventID: [UInt8]] = [:]
    private var digests: [DigestKey: Fingerprint] = [:]
    /// Where this set's compacted range ends (what `EventStore` keeps as `compacted_before`).
    public var compactedBefore = HLCTimestamp.zero

    public init() {}

    /// Inserts an encoded event; false if its id was already there (idempotent, like the store).
    @discardableResult
    public mutating func insert(_ bytes: [UInt8]) throws -> Bool {
        let (id, _) = try bytes.withUnsafeBytes { try EventCodec.peekHeader($0) }
        guard events[id] == nil else { return false }
        events[id] = bytes
        let fp = Fingerprint(eventBytes: bytes)
        for key in DigestKey.path(for: id.hlc) { digests[key, default: .zero].add(fp) }
        return true
    }

    public var ids: Set<EventID> { Set(events.keys) }

    public func fingerprint(_ key: DigestKey) -> Fingerprint { digests[key] ?? .zero }

    public func fingerprints(level: UInt8, buckets: ClosedRange<UInt64>) -> [DigestKey: Fingerprint] {
        var out: [DigestKey: Fingerprint] = [:]
        if UInt64(buckets.count) <= UInt64(digests.count) {
            for b in buckets {
                let key = DigestKey(level: level, bucket: b)
                if let fp = digests[key], fp.count > 0 { out[key] = fp }
            }
        } else {
            for (key, fp) in digests where key.level == level && buckets.contains(key.bucket) && fp.count > 0 {
                out[key] = fp
            }
        }
        return out
    }

    public func ids(in range: Range<HLCTimestamp>) -> [EventID] {
        events.keys.filter { range.contains($0.hlc) }.sorted()
    }
}
