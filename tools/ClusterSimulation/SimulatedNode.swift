import EventLog
import Replication

/// One node of a `ClusterSimulator` run: the same state machines a `bifrost` process runs
/// (`SWIMInstance`, a `PeerSync` per connection, a `HybridLogicalClock`), over the in-memory
/// twin of its event store and a physical clock the simulator controls.
///
/// What survives a crash is what the real node keeps on disk: the committed log, and the
/// clock bound (the greatest HLC it issued or observed, which the store persists so the clock
/// never goes backwards across restarts). SWIM and sync state are lost; the view is rebuilt by
/// replaying the log, as a restarting store does from its checkpoint.
struct SimulatedNode {
    let index: Int
    let name: String
    let id: NodeID
    let gossipAddress: String
    let apiAddress: String
    /// Fixed offset of this machine's clock from true (virtual) time.
    let skewMillis: Int64
    /// A clock step in progress (NTP correction, VM migration…): added to the skew until
    /// `jumpEndsAt`.
    var jumpMillis: Int64 = 0
    var jumpEndsAt: Duration?

    /// Nil while the node is down.
    var swim: SWIMInstance<SplitMix64>?
    /// The incarnation of the last life; a restart takes the next one.
    var incarnation: SWIM.Incarnation = 0
    var downUntil: Duration?
    var restarts = 0

    /// The committed log: survives crashes.
    var log = SimulatedStore()
    var hlc = HybridLogicalClock()
    /// The greatest HLC this node issued or observed (the persisted clock bound). Every new
    /// timestamp must exceed it: that is the monotonicity invariant.
    var clockBound = HLCTimestamp.zero
    /// Folded incrementally from every newly inserted event.
    var view = ViewState()
    /// Events this node refused at least once because their HLC was too far ahead of its clock.
    var quarantined: Set<EventID> = []

    init(index: Int, skewMillis: Int64) {
        self.index = index
        self.name = Self.name(index)
        self.id = NodeID(name: name)
        self.gossipAddress = "10.0.0.\(index + 1):7946"
        self.apiAddress = "10.0.0.\(index + 1):8080"
        self.skewMillis = skewMillis
    }

    /// `node-1`, `node-2`, …; which end of a pair initiates reconciliation is `PeerSync`'s
    /// rule (the smaller name), not the index order.
    static func name(_ index: Int) -> String { "node-\(index + 1)" }

    var isUp: Bool { swim != nil }

    /// Unix milliseconds on this machine's clock at virtual time `now`.
    func physicalMillis(at now: Duration) -> UInt64 {
        let millis = Int64(ClusterSimulator.epochMillis) + now.simulatorMillis + skewMillis + jumpMillis
        return UInt64(max(0, millis))
    }

    /// The member this node announces in its `incarnation`-th life.
    func member(incarnation: SWIM.Incarnation) -> SWIM.Member {
        SWIM.Member(name: name, gossipAddress: gossipAddress, apiAddress: apiAddress, incarnation: incarnation)
    }

    /// Whether this node's membership view has `other` alive or suspect (a sync peer).
    func listsActive(_ other: String) -> Bool { swim?.member(named: other)?.status.isActive ?? false }

    /// The view a restarting node rebuilds: every stored event folded in id order.
    func replayedView() throws -> ViewState {
        var view = ViewState()
        for id in log.sortedIDs { view.apply(try EventCodec.decode(log.set.events[id]!)) }
        return view
    }
}

extension Duration {
    /// Whole milliseconds, rounded toward zero.
    var simulatorMillis: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}

/// A node's log as `PeerSync` reads it: an `InMemoryEventSet` (the committed events and their
/// digest tree) plus the indexes a real store keeps — watermarks per origin and the ids in
/// order — so that an acknowledgement or a catch-up batch costs what it costs in LMDB, not a
/// scan of the whole set. The simulator checks the indexes against the set (`audit`), so the
/// set stays the oracle.
struct SimulatedStore: ReplicaStore {
    private(set) var set = InMemoryEventSet()
    private var watermarks: [NodeID: HLCTimestamp] = [:]
    /// Every id, ascending.
    private(set) var sortedIDs: [EventID] = []

    var count: Int { sortedIDs.count }

    func contains(_ id: EventID) -> Bool { set.events[id] != nil }

    /// Inserts an encoded event; false if its id was already there.
    @discardableResult
    mutating func insert(_ bytes: [UInt8]) throws -> Bool {
        guard try set.insert(bytes) else { return false }
        let (id, _) = try bytes.withUnsafeBytes { try EventCodec.peekHeader($0) }
        watermarks[id.origin] = max(watermarks[id.origin] ?? .zero, id.hlc)
        sortedIDs.insert(id, at: firstIndex { $0 >= id })
        return true
    }

    /// The first index whose id satisfies `isAtOrAbove` (a predicate monotone in the order).
    private func firstIndex(_ isAtOrAbove: (EventID) -> Bool) -> Int {
        var low = 0
        var high = sortedIDs.count
        while low < high {
            let mid = (low + high) / 2
            if isAtOrAbove(sortedIDs[mid]) { high = mid } else { low = mid + 1 }
        }
        return low
    }

    func originWatermarks() -> [NodeID: HLCTimestamp] { watermarks }

    func encodedEvents(after: [NodeID: HLCTimestamp], limit: Int) -> [(EventID, [UInt8])] {
        guard let start = after.values.min(), limit > 0 else { return [] }
        var out: [(EventID, [UInt8])] = []
        for id in sortedIDs[firstIndex({ $0.hlc > start })...] {
            if let floor = after[id.origin], id.hlc > floor { out.append((id, set.events[id]!)) }
            if out.count == limit { break }
        }
        return out
    }

    func encodedEvents(ids: [EventID]) -> [[UInt8]] { set.encodedEvents(ids: ids) }

    func compactionHorizon() -> HLCTimestamp { .zero }

    func fingerprint(_ key: DigestKey) -> Fingerprint { set.fingerprint(key) }

    func fingerprints(level: UInt8, buckets: ClosedRange<UInt64>) -> [DigestKey: Fingerprint] {
        set.fingerprints(level: level, buckets: buckets)
    }

    func ids(in range: Range<HLCTimestamp>) -> [EventID] {
        Array(sortedIDs[firstIndex({ $0.hlc >= range.lowerBound })..<firstIndex({ $0.hlc >= range.upperBound })])
    }

    /// Where the indexes disagree with the set, if anywhere: the same reads answered by both.
    func audit(floors: [NodeID: HLCTimestamp], limit: Int, range: Range<HLCTimestamp>) -> String? {
        if watermarks != set.originWatermarks() { return "watermarks differ" }
        if sortedIDs != set.events.keys.sorted() { return "id index differs" }
        let mine = encodedEvents(after: floors, limit: limit)
        let theirs = set.encodedEvents(after: floors, limit: limit)
        if mine.map(\.0) != theirs.map(\.0) || mine.map(\.1) != theirs.map(\.1) {
            return "catch-up batch after \(floors) differs"
        }
        if ids(in: range) != set.ids(in: range) { return "ids in \(range) differ" }
        return nil
    }
}
