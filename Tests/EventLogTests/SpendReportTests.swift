import Testing

@testable import EventLog

@Suite struct SpendReportTests {
    static let t0: UInt64 = 1_764_000_000_000

    static func usage(
        _ i: Int, vk: String?, key: String, model: String, minute: UInt64, cost: UInt64?, tokens: UInt32 = 100
    ) -> Event {
        let start = t0 + minute * 60_000
        return Event(
            id: EventID(
                hlc: HLCTimestamp(wallMillis: start + UInt64(i % 50), logical: UInt16(i % 7)),
                origin: NodeID(name: "n\(i % 3)")),
            payload: .usageRecorded(
                UsageRecorded(
                    requestID: "", keyID: key, model: model, limitKeys: vk.map { ["vk:\($0)", "pk:\(key)"] } ?? [],
                    windowStartMillis: start, windowMillis: 60_000, tokensIn: tokens, tokensOut: tokens / 2,
                    latencyMicros: 1_000, status: 200, outcome: .success, cacheReadTokens: tokens / 4,
                    costMicros: cost, priceVersion: cost == nil ? "" : "v1")))
    }

    static let events: [Event] = (0..<300).map { i in
        usage(
            i, vk: i % 5 == 0 ? nil : (i % 2 == 0 ? "team-a" : "team-b"), key: i % 3 == 0 ? "k1" : "k2",
            model: i % 7 == 0 ? "unpriced-model" : "gpt-4o-mini", minute: UInt64(i / 10),
            cost: i % 7 == 0 ? nil : UInt64(i))
    }

    static func sum(_ values: [Int]) -> UInt64 { values.reduce(UInt64(0)) { $0 + UInt64($1) } }

    static func report(_ events: [Event], since: UInt64 = 0, until: UInt64 = .max) -> SpendReport {
        var r = SpendReport(sinceMillis: since, untilMillis: until)
        for e in events { r.add(e) }
        return r
    }

    @Test func totalsPerVirtualKeyAndProviderKeyByModelAreExactSums() {
        let r = Self.report(Self.events)
        let pricedCost = Self.sum((0..<300).filter { $0 % 7 != 0 })
        #expect(r.total.costMicros == pricedCost)
        #expect(r.total.unpricedRequests == UInt64((0..<300).filter { $0 % 7 == 0 }.count))
        #expect(r.total.requests == 300)
        let teamA = Self.sum((0..<300).filter { (i: Int) -> Bool in i % 5 != 0 && i % 2 == 0 && i % 7 != 0 })
        #expect(r.costMicros(virtualKey: "team-a") == teamA)
        let anonymous = r.virtualKeys[SpendReport.noVirtualKey] ?? [:]
        let anonymousRequests: UInt64 = anonymous.values.reduce(0) { $0 + $1.requests }
        #expect(anonymousRequests == 60)
        let k1 = r.providerKeys["k1"]!.values.reduce(UInt64(0)) { $0 + $1.costMicros }
        let k2 = r.providerKeys["k2"]!.values.reduce(UInt64(0)) { $0 + $1.costMicros }
        #expect(k1 + k2 == pricedCost)
        #expect(r.virtualKeys["team-b"]?["unpriced-model"]?.costMicros == 0)
        #expect(r.total.cacheReadTokens == 300 * 25)
    }

    @Test func anyOrderGivesTheSameReportAndTheRangeIsByWindowStart() {
        var rng = SplitMix64(seed: 9)
        let shuffled = Self.events.shuffled(using: &rng)
        #expect(Self.report(shuffled) == Self.report(Self.events))
        // Minutes 10..<20 hold events 100..<200.
        let r = Self.report(shuffled, since: Self.t0 + 10 * 60_000, until: Self.t0 + 20 * 60_000)
        #expect(r.total.requests == 100)
        #expect(r.total.costMicros == Self.sum((100..<200).filter { $0 % 7 != 0 }))
    }

    @Test func compactedUsageAnswersTheSame() async throws {
        let dir = TempDir()
        let store = try EventStore.open(directory: dir.path, nodeName: "n0", settings: testSettings())
        _ = try await store.insert(Self.events)
        let before = try store.reader.events()
        _ = try await store.compact(before: HLCTimestamp(wallMillis: Self.t0 + 25 * 60_000, logical: 0))
        let after = try store.reader.events()
        #expect(after.count < before.count)
        #expect(Self.report(after) == Self.report(before))
        let range = (Self.t0 + 5 * 60_000, Self.t0 + 12 * 60_000)
        #expect(
            Self.report(after, since: range.0, until: range.1) == Self.report(before, since: range.0, until: range.1))
        // The performance view keeps the costs through compaction and its checkpoint.
        let restored = try ViewCodec.decode(ViewCodec.encode(store.viewSnapshot), settings: store.viewSnapshot.settings)
        #expect(restored.keyPerformance == store.viewSnapshot.keyPerformance)
        #expect(store.viewSnapshot.keyPerformance.values.reduce(UInt64(0)) { $0 + $1.costMicros } > 0)
        try await store.close()
    }
}
