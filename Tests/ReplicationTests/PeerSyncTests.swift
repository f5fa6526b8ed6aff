import EventLog
import Testing

@testable import Replication

@Suite struct PeerSyncTests {
    static let now: UInt64 = 1_764_000_000_000 + 86_400_000

    static func event(_ wall: UInt64, _ logical: UInt16, _ origin: String) -> [UInt8] {
        EventCodec.encode(
            Event(
                id: EventID(hlc: HLCTimestamp(wallMillis: wall, logical: logical), origin: NodeID(name: origin)),
                payload: .rateLimitIncrement(
                    RateLimitIncrement(keys: ["vk:a"], windowStartMillis: 0, windowMillis: 60_000))))
    }

    /// Two in-memory replicas connected by a lossless pipe; runs until nobody has anything to say.
    struct Pair {
        var stores: [InMemoryEventSet] = [InMemoryEventSet(), InMemoryEventSet()]
        var syncs = [PeerSync(localNode: "a"), PeerSync(localNode: "b")]
        var messages = 0

        mutating func run(_ initial: [(to: Int, message: SyncMessage)], at now: Duration) throws {
            var queue = initial
            while !queue.isEmpty {
                let (to, message) = queue.removeFirst()
                messages += 1
                // Every message crosses the wire format.
                let decoded = try SyncCodec.decode(SyncCodec.encode(message))
                var outputs = try syncs[to].onMessage(decoded, stores[to], now: now, nowMillis: PeerSyncTests.now)
                while let batch = try syncs[to].nextCatchUpBatch(stores[to]) { outputs.append(.send(batch)) }
                for output in outputs {
                    switch output {
                    case .send(let m): queue.append((1 - to, m))
                    case .insert(let events):
                        for e in events { try stores[to].insert(e) }
                        for case .send(let ack) in try syncs[to].inserted(into: stores[to]) {
                            queue.append((1 - to, ack))
                        }
                    }
                }
                #expect(messages < 10_000)
                if messages >= 10_000 { return }
            }
        }

        mutating func connect(at now: Duration) throws {
            var initial: [(to: Int, message: SyncMessage)] = []
            for side in 0..<2 {
                for case .send(let m) in try syncs[side].start(stores[side]) { initial.append((1 - side, m)) }
            }
            try run(initial, at: now)
        }
    }

    @Test func connect_catchesAnEmptyPeerUp_byWatermark() throws {
        var pair = Pair()
        for i in 0..<5_000 {
            try pair.stores[0].insert(Self.event(Self.now - 60_000 + UInt64(i / 10), UInt16(i % 10), "a"))
        }
        try pair.connect(at: .seconds(1))
        #expect(pair.stores[1].ids == pair.stores[0].ids)
        #expect(pair.syncs[1].peerWatermarks[NodeID(name: "a")] != nil)
    }

    @Test func reconciliation_repairsGapsBelowTheWatermark() throws {
        var pair = Pair()
        var missing: Set<EventID> = []
        for i in 0..<3_000 {
            let e = Self.event(Self.now - 3_600_000 + UInt64(i * 1000), 0, "c")
            try pair.stores[0].insert(e)
            if i % 97 == 5 {
                missing.insert(try e.withUnsafeBytes { try EventCodec.peekHeader($0).0 })
            } else {
                try pair.stores[1].insert(e)
            }
        }
        // b's watermark for origin c equals a's, so only reconciliation can find these.
        #expect(pair.stores[1].originWatermarks() == pair.stores[0].originWatermarks())
        try pair.connect(at: .seconds(1))
        let stillMissing = pair.stores[0].ids.subtracting(pair.stores[1].ids)
        #expect(stillMissing.isEmpty, "\(stillMissing.count) of \(missing.count) not repaired")
        #expect(pair.syncs[0].counters.eventsRepaired + pair.syncs[1].counters.eventsRepaired == missing.count)
    }

    @Test func reconciliation_neverComparesWhatEitherSideCompacted() throws {
        var pair = Pair()
        let compacted = HLCTimestamp(wallMillis: Self.now - 1_800_000, logical: 0)
        var below = 0
        var above = 0
        for i in 0..<3_000 {
            let e = Self.event(Self.now - 3_600_000 + UInt64(i * 1000), 0, "c")
            try pair.stores[0].insert(e)
            let id = try e.withUnsafeBytes { try EventCodec.peekHeader($0).0 }
            if i % 97 == 5 {
                if id.hlc < compacted { below += 1 } else { above += 1 }
            } else {
                try pair.stores[1].insert(e)
            }
        }
        // b compacted the first half hour (a has not): what differs there is not a gap.
        pair.stores[1].compactedBefore = compacted
        try pair.connect(at: .seconds(1))
        let missing = pair.stores[0].ids.subtracting(pair.stores[1].ids)
        #expect(below > 0 && above > 0)
        // Gaps below the compacted boundary stay (the leaf straddling it is not compared
        // either); every gap above that leaf is repaired.
        let straddling = DigestKey(level: 0, hlc: compacted).hlcRange
        #expect(
            missing.allSatisfy { $0.hlc < straddling.upperBound },
            "\(missing.filter { $0.hlc >= straddling.upperBound }.map { $0.hlc.wallMillis - compacted.wallMillis }) leaf \(straddling.upperBound.wallMillis - compacted.wallMillis)"
        )
        #expect(missing.filter { $0.hlc < compacted }.count == below)
        #expect(
            pair.syncs[0].counters.eventsRepaired + pair.syncs[1].counters.eventsRepaired >= above - missing.count
                + below)
    }

    @Test func liveCommits_streamOnlyThisNodesOwnEvents() throws {
        var sync = PeerSync(localNode: "a")
        let own = try EventCodec.decode(Self.event(Self.now, 0, "a"))
        let relayed = try EventCodec.decode(Self.event(Self.now, 1, "z"))
        let out = sync.onLocalCommit([
            CommittedEvent(event: own, bytes: EventCodec.encode(own)),
            CommittedEvent(event: relayed, bytes: EventCodec.encode(relayed)),
        ])
        #expect(out == [.send(.events([EventCodec.encode(own)]))])
    }

    @Test func reconciliation_runsAgainOnlyWhenDue() throws {
        var pair = Pair()
        try pair.stores[0].insert(Self.event(Self.now - 100_000, 0, "a"))
        try pair.connect(at: .seconds(1))
        // The opening session waited for catch-up; it starts at the first tick after it.
        let opening = try pair.syncs[0].onTick(pair.stores[0], now: .seconds(2), nowMillis: Self.now)
        #expect(opening.count == 1)
        let sessions = pair.syncs[0].counters.reconciliations
        #expect(try pair.syncs[0].onTick(pair.stores[0], now: .seconds(3), nowMillis: Self.now).isEmpty)
        let due = try pair.syncs[0].onTick(pair.stores[0], now: .seconds(12), nowMillis: Self.now)
        #expect(due.count == 1)
        #expect(pair.syncs[0].counters.reconciliations == sessions + 1)
    }

    @Test func openingReconciliation_waitsForCatchUp_soNothingIsSentTwice() throws {
        var pair = Pair()
        // Each side is ahead of the other by its own recent events.
        for i in 0..<4_000 {
            try pair.stores[0].insert(Self.event(Self.now - 30_000 + UInt64(i), 0, "a"))
            try pair.stores[1].insert(Self.event(Self.now - 30_000 + UInt64(i), 1, "b"))
        }
        try pair.connect(at: .seconds(1))
        #expect(pair.syncs[0].counters.reconciliations == 0)
        #expect(pair.stores[1].ids == pair.stores[0].ids)
        var initial: [(to: Int, message: SyncMessage)] = []
        for case .send(let m) in try pair.syncs[0].onTick(pair.stores[0], now: .seconds(2), nowMillis: Self.now) {
            initial.append((1, m))
        }
        try pair.run(initial, at: .seconds(2))
        #expect(pair.syncs[0].counters.reconciliations == 1)
        let sent = pair.syncs.map { $0.counters.eventsSent + $0.counters.eventsRepaired }
        #expect(sent == [4_000, 4_000])
    }
}
