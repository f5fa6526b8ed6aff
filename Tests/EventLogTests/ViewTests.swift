import Crypto
import Testing

@testable import EventLog

@Suite struct ViewTests {
    static let t0: UInt64 = 1_764_000_000_000

    @Test(arguments: [1, 2, 3, 4, 5] as [UInt64])
    func anyPermutationAndDuplication_givesTheSameViewAsReplay(seed: UInt64) async throws {
        let dir = TempDir()
        let events = randomEvents(count: 1_500, seed: seed, origins: ["a", "b", "c"], startMillis: Self.t0)
        var rng = SplitMix64(seed: seed)
        var deliveries = events + (0..<400).map { _ in events.randomElement(using: &rng)! }
        deliveries.shuffle(using: &rng)
        let store = try EventStore.open(directory: dir.sub("s"), nodeName: "s", settings: testSettings())
        var i = 0
        while i < deliveries.count {
            let n = Int.random(in: 1...200, using: &rng)
            _ = try await store.insert(Array(deliveries[i..<min(i + n, deliveries.count)]))
            i += n
        }
        let incremental = ViewCodec.encode(store.viewSnapshot)
        let replayed = ViewCodec.encode(try store.reader.replay())
        #expect(incremental == replayed)
        // A pure fold in sorted order agrees as well.
        var pure = ViewState()
        for e in events.sorted(by: { $0.id < $1.id }) { pure.apply(e) }
        #expect(ViewCodec.encode(pure) == incremental)
        // And the JSON rendering is byte-identical.
        #expect(EventJSON.views(pure).rendered() == EventJSON.views(store.viewSnapshot).rendered())
        try await store.close()
    }

    @Test(arguments: [1, 2, 3] as [UInt64])
    func retainedSpan_prunesOldWindows_byARuleOfTheEventsAlone(seed: UInt64) async throws {
        let dir = TempDir()
        var settings = testSettings()
        settings.views.retainMillis = 600_000
        let events = randomEvents(
            count: 3_000, seed: seed, origins: ["a", "b", "c"], startMillis: Self.t0, spanMillis: 3_600_000)
        var rng = SplitMix64(seed: seed)
        var deliveries = events + (0..<300).map { _ in events.randomElement(using: &rng)! }
        deliveries.shuffle(using: &rng)
        let store = try EventStore.open(directory: dir.path, nodeName: "s", settings: settings)
        var i = 0
        while i < deliveries.count {
            let n = Int.random(in: 1...200, using: &rng)
            _ = try await store.insert(Array(deliveries[i..<min(i + n, deliveries.count)]))
            i += n
        }
        let live = store.viewSnapshot
        // Shuffled arrival, a replay in log order and a pure fold in id order agree.
        #expect(ViewCodec.encode(try store.reader.replay(settings: settings.views)) == ViewCodec.encode(live))
        var pure = ViewState(settings: settings.views)
        for e in events.sorted(by: { $0.id < $1.id }) { pure.apply(e) }
        #expect(ViewCodec.encode(pure) == ViewCodec.encode(live))
        // Only windows ending within ten minutes of the newest event remain, with the sums an
        // unpruned fold has for them.
        let cutoff = live.retainedAfterMillis
        #expect(cutoff > Self.t0 + 2_400_000)
        var full = ViewState()
        for e in events { full.apply(e) }
        #expect(!live.limitCounters.isEmpty && live.limitCounters.count < full.limitCounters.count)
        #expect(live.keyPerformance.count < full.keyPerformance.count)
        for (key, counts) in live.limitCounters {
            #expect(key.windowStartMillis + UInt64(key.windowMillis) > cutoff)
            #expect(full.limitCounters[key] == counts)
        }
        for (key, summary) in live.keyPerformance {
            #expect(key.windowStartMillis + settings.views.performanceWindowMillis > cutoff)
            #expect(full.keyPerformance[key] == summary)
        }
        #expect(
            full.limitCounters.filter { $0.key.windowStartMillis + UInt64($0.key.windowMillis) > cutoff }
                == live.limitCounters)
        // The checkpoint carries the span, so a restart and the replay tool fold the same way.
        try await store.close()
        let reopened = try EventStore.open(directory: dir.path, nodeName: "s", settings: settings)
        let checkpointed = try #require(try reopened.reader.checkpoint())
        #expect(checkpointed.view.settings.retainMillis == 600_000)
        #expect(ViewCodec.encode(reopened.viewSnapshot) == ViewCodec.encode(live))
        try await reopened.close()
    }

    @Test func counters_sumPerLimitKeyWindowAndOrigin() {
        var v = ViewState()
        let w = RateLimitIncrement(
            keys: ["vk:a", "pk:k1"], windowStartMillis: 60_000, windowMillis: 60_000, requests: 2)
        v.apply(
            Event(
                id: EventID(hlc: HLCTimestamp(wallMillis: 61_000, logical: 0), origin: NodeID(name: "n1")),
                payload: .rateLimitIncrement(w)))
        v.apply(
            Event(
                id: EventID(hlc: HLCTimestamp(wallMillis: 61_001, logical: 0), origin: NodeID(name: "n2")),
                payload: .rateLimitIncrement(w)))
        #expect(v.admitted("vk:a", windowMillis: 60_000, windowStartMillis: 60_000) == 4)
        let counts = v.limitCounters[CounterKey(limitKey: "pk:k1", windowMillis: 60_000, windowStartMillis: 60_000)]!
        #expect(counts.byOrigin == [NodeID(name: "n1"): 2, NodeID(name: "n2"): 2])
    }

    @Test func weights_areLastWriterWinsByEventID_regardlessOfArrival() {
        let older = Event(
            id: EventID(hlc: HLCTimestamp(wallMillis: 100, logical: 0), origin: NodeID(name: "z")),
            payload: .weightChanged(WeightChanged(keyID: "k", oldWeight: 1, newWeight: 0.3, reason: "a", actor: "x")))
        let newer = Event(
            id: EventID(hlc: HLCTimestamp(wallMillis: 100, logical: 1), origin: NodeID(name: "a")),
            payload: .weightChanged(WeightChanged(keyID: "k", oldWeight: 0.3, newWeight: 0.7, reason: "b", actor: "y")))
        var v1 = ViewState()
        v1.apply(older)
        v1.apply(newer)
        var v2 = ViewState()
        v2.apply(newer)
        v2.apply(older)
        #expect(v1.weights["k"]?.value.newWeight == 0.7)
        #expect(v1 == v2)
    }

    @Test func config_foldsOnlyTrustedValidSignatures() throws {
        let operatorKey = Curve25519.Signing.PrivateKey()
        let stranger = Curve25519.Signing.PrivateKey()
        let doc = Array(#"{"providers":{}}"#.utf8)
        let trusted = ViewSettings(trustedConfigKeys: [Array(operatorKey.publicKey.rawRepresentation)])
        let good = try ConfigSignature.sign(document: doc, author: "ops", privateKey: operatorKey)
        var tampered = good
        tampered.document = Array(#"{"providers":{"evil":{}}}"#.utf8)
        let foreign = try ConfigSignature.sign(document: doc, author: "eve", privateKey: stranger)
        let unsigned = ConfigUpdated(document: doc, author: "ops")
        func id(_ i: UInt16) -> EventID {
            EventID(hlc: HLCTimestamp(wallMillis: 1, logical: i), origin: NodeID(name: "n"))
        }

        var v = ViewState(settings: trusted)
        v.apply(Event(id: id(1), payload: .configUpdated(good)))
        v.apply(Event(id: id(2), payload: .configUpdated(tampered)))
        v.apply(Event(id: id(3), payload: .configUpdated(foreign)))
        v.apply(Event(id: id(4), payload: .configUpdated(unsigned)))
        #expect(v.config?.value == good)
        #expect(v.rejectedConfigs == 3)

        var open = ViewState()
        open.apply(Event(id: id(2), payload: .configUpdated(tampered)))
        #expect(open.config == nil, "a present but invalid signature is refused even without a trust list")
        open.apply(Event(id: id(4), payload: .configUpdated(unsigned)))
        #expect(open.config?.value == unsigned)
    }

    @Test func viewCodec_roundTrips() async throws {
        var v = ViewState()
        for e in randomEvents(count: 2_000, seed: 12, origins: ["a", "b"], startMillis: Self.t0) { v.apply(e) }
        let bytes = ViewCodec.encode(v)
        #expect(try ViewCodec.decode(bytes, settings: ViewSettings()) == v)
    }

    @Test func restart_restoresTheCheckpointAndReplaysOnlyTheTail() async throws {
        let dir = TempDir()
        let events = randomEvents(count: 3_000, seed: 4, origins: ["a", "b"], startMillis: Self.t0)
        let live: ViewState
        do {
            let store = try EventStore.open(directory: dir.path, nodeName: "n1", settings: testSettings())
            _ = try await store.insert(Array(events[0..<2_000]))
            try await store.checkpoint()
            // Late events, some older than everything checkpointed, arrive after the checkpoint.
            let late = Array(events[2_000...]).sorted { $0.id < $1.id }
            _ = try await store.insert(late)
            live = store.viewSnapshot
            // Dropped without close(): no final checkpoint, as after a crash.
        }
        let store = try EventStore.open(directory: dir.path, nodeName: "n1", settings: testSettings())
        let (restored, tail) = try store.reader.restoreViews()
        #expect(tail == 1_000)
        #expect(ViewCodec.encode(restored) == ViewCodec.encode(live))
        #expect(ViewCodec.encode(store.viewSnapshot) == ViewCodec.encode(try store.reader.replay()))
        try await store.close()
    }

    @Test func replayAsOf_foldsOnlyEventsUpToThatHLC() async throws {
        let dir = TempDir()
        let events = randomEvents(count: 1_000, seed: 6, origins: ["a", "b"], startMillis: Self.t0)
        let store = try EventStore.open(directory: dir.path, nodeName: "n1", settings: testSettings())
        _ = try await store.insert(events)
        let sorted = events.sorted { $0.id < $1.id }
        let cut = sorted[600].id.hlc
        var expected = ViewState()
        for e in sorted where e.id.hlc <= cut { expected.apply(e) }
        #expect(try store.reader.replay(until: cut) == expected)
        try await store.close()
    }
}
