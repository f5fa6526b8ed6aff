import EventLog

/// The reads the sync protocol makes of a log. `EventLogReader` is one; `InMemoryEventSet` is
/// the simulator's twin. Writes (inserts) are effects the shell performs.
public protocol ReplicaStore: DigestSource {
    /// Greatest HLC stored per origin.
    func originWatermarks() throws -> [NodeID: HLCTimestamp]
    /// Up to `limit` encoded events, in HLC order, of the origins in `after` with an HLC greater
    /// than the origin's entry (the catch-up a peer with those watermarks needs).
    func encodedEvents(after: [NodeID: HLCTimestamp], limit: Int) throws -> [(EventID, [UInt8])]
    /// The encoded events with these ids (those that exist).
    func encodedEvents(ids: [EventID]) throws -> [[UInt8]]
    /// Events below this HLC may have been compacted (excluded from reconciliation).
    func compactionHorizon() throws -> HLCTimestamp
}

extension EventLogReader: ReplicaStore {
    public func originWatermarks() throws -> [NodeID: HLCTimestamp] { try watermarks().mapValues(\.maxHLC) }

    public func encodedEvents(after: [NodeID: HLCTimestamp], limit: Int) throws -> [(EventID, [UInt8])] {
        guard let start = after.values.min(), limit > 0 else { return [] }
        var out: [(EventID, [UInt8])] = []
        try scanRaw(EventFilter(since: HLCTimestamp(rawValue: start.rawValue &+ 1), origins: Set(after.keys))) {
            id, _, bytes in
            if let floor = after[id.origin], id.hlc > floor { out.append((id, Array(bytes))) }
            return out.count < limit
        }
        return out
    }

    public func encodedEvents(ids: [EventID]) throws -> [[UInt8]] {
        try ids.compactMap { id in try encodedEvent(id) }
    }

    public func compactionHorizon() throws -> HLCTimestamp { try compactedBefore() ?? .zero }
}

extension InMemoryEventSet: ReplicaStore {
    public func originWatermarks() -> [NodeID: HLCTimestamp] {
        var out: [NodeID: HLCTimestamp] = [:]
        for id in events.keys { out[id.origin] = max(out[id.origin] ?? .zero, id.hlc) }
        return out
    }

    public func encodedEvents(after: [NodeID: HLCTimestamp], limit: Int) -> [(EventID, [UInt8])] {
        let matching = events.filter { id, _ in after[id.origin].map { id.hlc > $0 } ?? false }
        return matching.sorted { $0.key < $1.key }.prefix(limit).map { ($0.key, $0.value) }
    }

    public func encodedEvents(ids: [EventID]) -> [[UInt8]] { ids.compactMap { events[$0] } }

    public func compactionHorizon() -> HLCTimestamp { compactedBefore }
}
