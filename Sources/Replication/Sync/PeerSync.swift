import EventLog

/// The sync protocol with one peer, as a state machine (DESIGN §3): streaming of this node's new
/// events, watermark catch-up on connect, and periodic digest reconciliation. Reads go to a
/// `ReplicaStore`; everything else is an `Output` the shell performs (send a message, insert
/// events), so the simulator drives the same code with virtual time and an in-memory log.
///
/// Symmetric: both ends run one; of the two, the node with the smaller name starts the
/// reconciliation sessions. Only events this node originated are streamed live; events of
/// other origins reach a peer from their own origin, or through catch-up and reconciliation
/// when that link is down.
public struct PeerSync: Sendable {
    public struct Settings: Sendable {
        /// Time between reconciliation sessions (one also starts right after `hello`).
        public var reconcileInterval: Duration = .seconds(10)
        /// Most events per `events` message.
        public var batchEvents: Int = 20_000
        public var maxClockOffsetMillis: UInt64 = 500
        /// Added to the clock offset to form the unsettled head skipped by reconciliation.
        public var settleMarginMillis: UInt64 = 1_000

        public init() {}
    }

    public enum Output: Sendable, Equatable {
        case send(SyncMessage)
        /// Insert these encoded events, then call `inserted(into:)` to acknowledge.
        case insert([[UInt8]])
    }

    /// Work done, for metrics.
    public struct Counters: Sendable, Equatable {
        public var reconciliations = 0
        public var reconcileMessages = 0
        public var reconcileBytes = 0
        public var eventsSent = 0
        public var eventsReceived = 0
        public var eventsRepaired = 0
    }

    public let localNode: String
    public let localID: NodeID
    public var settings: Settings
    public private(set) var peerNode: String?
    /// What the peer said it has (hello and acks), per origin.
    public private(set) var peerWatermarks: [NodeID: HLCTimestamp] = [:]
    public private(set) var counters = Counters()
    private var catchUpFrom: [NodeID: HLCTimestamp] = [:]
    /// What the peer had beyond this node at hello: the opening reconciliation waits until this
    /// node has it (or one `reconcileInterval` passed), so it does not fetch what catch-up is
    /// already sending.
    private var awaitingFromPeer: [NodeID: HLCTimestamp] = [:]
    private var openingReconcilePending = false
    private var session: UInt64 = 0
    private var nextReconcileAt: Duration?

    public init(localNode: String, settings: Settings = Settings()) {
        self.localNode = localNode
        self.localID = NodeID(name: localNode)
        self.settings = settings
    }

    /// Opening message on a new connection.
    public mutating func start(_ store: some ReplicaStore) throws -> [Output] {
        [.send(.hello(node: localNode, watermarks: try store.originWatermarks()))]
    }

    /// Whether catch-up has more to send; the shell calls `nextCatchUpBatch` while writable.
    public var isCatchingUp: Bool { !catchUpFrom.isEmpty }

    /// The next batch of events the peer lacks by watermark, or nil when caught up.
    public mutating func nextCatchUpBatch(_ store: some ReplicaStore) throws -> SyncMessage? {
        guard !catchUpFrom.isEmpty else { return nil }
        let batch = try store.encodedEvents(after: catchUpFrom, limit: settings.batchEvents)
        if batch.count < settings.batchEvents {
            catchUpFrom = [:]
        }
        for (id, _) in batch where catchUpFrom[id.origin] != nil { catchUpFrom[id.origin] = id.hlc }
        guard !batch.isEmpty else { return nil }
        counters.eventsSent += batch.count
        return .events(batch.map(\.1))
    }

    public mutating func onMessage(
        _ message: SyncMessage, _ store: some ReplicaStore, now: Duration, nowMillis: UInt64
    )
        throws -> [Output]
    {
        switch message {
        case .hello(let node, let watermarks):
            peerNode = node
            peerWatermarks = watermarks
            let mine = try store.originWatermarks()
            for (origin, hlc) in mine where hlc > (watermarks[origin] ?? .zero) {
                catchUpFrom[origin] = watermarks[origin] ?? .zero
            }
            awaitingFromPeer = watermarks.filter { $0.value > (mine[$0.key] ?? .zero) }
            // Right away when neither side is behind, otherwise once both catch-ups finished,
            // and at the latest after one interval.
            openingReconcilePending = true
            nextReconcileAt = now + settings.reconcileInterval
            return try onTick(store, now: now, nowMillis: nowMillis)
        case .events(let events):
            counters.eventsReceived += events.count
            return events.isEmpty ? [] : [.insert(events)]
        case .ack(let watermarks):
            for (origin, hlc) in watermarks where hlc > (peerWatermarks[origin] ?? .zero) {
                peerWatermarks[origin] = hlc
            }
            return []
        case .reconcile(let id, let offered, let items):
            counters.reconcileMessages += 1
            counters.reconcileBytes += items.reduce(0) { $0 + SyncCodec.size(of: $1) }
            // Neither side compares what either has compacted: the sides may hold aggregates
            // and originals there, and repairing one from the other would count twice. The
            // reply carries the widened window, so both sides settle on it.
            var window = offered
            window.compactedBefore = max(offered.compactedBefore, try store.compactionHorizon())
            let step = try Reconciliation.respond(to: items, store, window: window)
            var out: [Output] = []
            if !step.missingThere.isEmpty {
                let events = try store.encodedEvents(ids: step.missingThere)
                counters.eventsRepaired += events.count
                out += chunks(events).map { .send(.events($0)) }
            }
            if !step.missingHere.isEmpty { out.append(.send(.fetch(session: id, ids: step.missingHere))) }
            if !step.reply.isEmpty { out.append(.send(.reconcile(session: id, window: window, items: step.reply))) }
            return out
        case .fetch(_, let ids):
            let events = try store.encodedEvents(ids: ids)
            counters.eventsRepaired += events.count
            return chunks(events).map { .send(.events($0)) }
        }
    }

    /// Call after the events of an `.insert` output were stored: acknowledges with watermarks.
    public func inserted(into store: some ReplicaStore) throws -> [Output] {
        [.send(.ack(watermarks: try store.originWatermarks()))]
    }

    /// This node committed events: stream the ones it originated.
    public mutating func onLocalCommit(_ batch: [CommittedEvent]) -> [Output] {
        let mine = batch.filter { $0.event.id.origin == localID }.map(\.bytes)
        counters.eventsSent += mine.count
        return chunks(mine).map { .send(.events($0)) }
    }

    /// Starts a reconciliation session when one is due.
    public mutating func onTick(_ store: some ReplicaStore, now: Duration, nowMillis: UInt64) throws -> [Output] {
        // One side of each pair initiates (the smaller name), so a gap is repaired once.
        guard let peerNode, localNode < peerNode, let due = nextReconcileAt else { return [] }
        if now < due {
            guard openingReconcilePending, catchUpFrom.isEmpty else { return [] }
            if !awaitingFromPeer.isEmpty {
                let mine = try store.originWatermarks()
                awaitingFromPeer = awaitingFromPeer.filter { $0.value > (mine[$0.key] ?? .zero) }
                guard awaitingFromPeer.isEmpty else { return [] }
            }
        }
        openingReconcilePending = false
        awaitingFromPeer = [:]
        nextReconcileAt = now + settings.reconcileInterval
        session += 1
        counters.reconciliations += 1
        let window = Reconciliation.Window.at(
            nowMillis: nowMillis, maxClockOffsetMillis: settings.maxClockOffsetMillis,
            marginMillis: settings.settleMarginMillis, compactedBefore: try store.compactionHorizon())
        let items = try Reconciliation.start(store, window: window)
        guard !items.isEmpty else { return [] }
        counters.reconcileMessages += 1
        counters.reconcileBytes += items.reduce(0) { $0 + SyncCodec.size(of: $1) }
        return [.send(.reconcile(session: session, window: window, items: items))]
    }

    /// Starts a reconciliation at the next tick (after a rejoin or a healed partition).
    public mutating func reconcileSoon(now: Duration) { nextReconcileAt = now }

    private func chunks(_ events: [[UInt8]]) -> [[[UInt8]]] {
        stride(from: 0, to: events.count, by: settings.batchEvents).map {
            Array(events[$0..<min($0 + settings.batchEvents, events.count)])
        }
    }
}
