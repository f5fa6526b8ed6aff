import Testing

@testable import Gateway

/// Cluster-wide admission: own exact count + replicated peer counts, fixed and sliding windows,
/// and the share of the headroom a node may hold unconfirmed.
@Suite struct ClusterLimiterTests {
    /// The replicated counts as a test sets them, per (key, window start, window width).
    struct FakeCounts: PeerCounts {
        struct ID: Hashable {
            var key: String
            var start: UInt64
            var width: UInt64
        }

        var peerRequests: [ID: UInt64] = [:]
        var ownRequests: [ID: UInt64] = [:]
        var peerTokens: [ID: UInt64] = [:]
        var ownTokens: [ID: UInt64] = [:]

        func peerRequests(key: String, windowStart: UInt64, windowMillis: UInt64) -> UInt64 {
            peerRequests[ID(key: key, start: windowStart, width: windowMillis)] ?? 0
        }
        func ownRequests(key: String, windowStart: UInt64, windowMillis: UInt64) -> UInt64 {
            ownRequests[ID(key: key, start: windowStart, width: windowMillis)] ?? 0
        }
        func peerTokens(key: String, windowStart: UInt64, windowMillis: UInt64) -> UInt64 {
            peerTokens[ID(key: key, start: windowStart, width: windowMillis)] ?? 0
        }
        func ownTokens(key: String, windowStart: UInt64, windowMillis: UInt64) -> UInt64 {
            ownTokens[ID(key: key, start: windowStart, width: windowMillis)] ?? 0
        }
    }

    static let minute: UInt64 = 60_000
    /// The start of a minute window, well after the epoch.
    static let w0: UInt64 = 28_333_333 * minute

    static func id(_ key: String, _ start: UInt64, _ width: UInt64 = minute) -> FakeCounts.ID {
        FakeCounts.ID(key: key, start: start, width: width)
    }

    enum Outcome: Equatable {
        case admitted(seq: UInt64)
        case rejected(RateLimitRejection)
        case awaitConfirmation(RateLimitRejection)

        init(_ decision: AdmissionDecision) {
            switch decision {
            case .admitted(let seq, _): self = .admitted(seq: seq)
            case .rejected(let r): self = .rejected(r)
            case .awaitConfirmation(let r): self = .awaitConfirmation(r)
            }
        }

        var isAdmitted: Bool { if case .admitted = self { true } else { false } }
    }

    static func admit(
        _ limiter: inout ClusterLimiter, _ rules: [LimitRule], at now: UInt64, live: Int = 1,
        _ counts: FakeCounts = FakeCounts()
    ) -> Outcome {
        Outcome(limiter.admit(rules: rules, nowMillis: now, liveNodes: live, counts: counts))
    }

    /// Admits until the first refusal; returns how many got in and the refusal.
    static func admitUntilRefused(
        _ limiter: inout ClusterLimiter, _ rules: [LimitRule], at now: UInt64, live: Int = 1,
        _ counts: FakeCounts = FakeCounts()
    ) -> (admitted: Int, refusal: Outcome) {
        var n = 0
        while true {
            let outcome = admit(&limiter, rules, at: now, live: live, counts)
            guard outcome.isAdmitted else { return (n, outcome) }
            n += 1
            if n == 10_000 {
                Issue.record("no refusal after \(n) admissions")
                return (n, outcome)
            }
        }
    }

    @Test(
        arguments: [
            (0, 0, 10), (3, 0, 7), (0, 4, 6), (3, 2, 5), (10, 0, 0), (6, 6, 0),
        ] as [(UInt64, UInt64, Int)])
    func admit_countsOwnExactPlusPeers(peers: UInt64, ownInViews: UInt64, admits: Int) {
        let rule = LimitRule(key: "vk:team-a", requestsPerWindow: 10, tokensPerWindow: nil)
        var counts = FakeCounts()
        counts.peerRequests[Self.id("vk:team-a", Self.w0)] = peers
        counts.ownRequests[Self.id("vk:team-a", Self.w0)] = ownInViews
        var limiter = ClusterLimiter()
        let (n, refusal) = Self.admitUntilRefused(&limiter, [rule], at: Self.w0 + 5, counts)
        #expect(n == admits)
        guard case .rejected(let r) = refusal else {
            Issue.record("expected a rejection, got \(refusal)")
            return
        }
        #expect(r.unit == .requests)
        #expect(r.rule == rule)
        #expect(r.status.limit == 10)
        #expect(r.status.remaining == 0)
    }

    @Test func admit_ownCount_isSeededOnceThenExactInMemory() {
        let rule = LimitRule(key: "pk:k1", requestsPerWindow: 10, tokensPerWindow: nil)
        var counts = FakeCounts()
        counts.ownRequests[Self.id("pk:k1", Self.w0)] = 4
        var limiter = ClusterLimiter()
        #expect(Self.admit(&limiter, [rule], at: Self.w0, counts).isAdmitted)
        // The views lag behind (or were compacted): the in-memory count stays authoritative.
        counts.ownRequests[Self.id("pk:k1", Self.w0)] = 0
        #expect(Self.admitUntilRefused(&limiter, [rule], at: Self.w0, counts).admitted == 5)
        // Peers' counts are read afresh each time.
        counts.peerRequests[Self.id("pk:k1", Self.w0)] = 1
        #expect(
            limiter.status(rule: rule, nowMillis: Self.w0, liveNodes: 1, counts: counts)
                == LimitStatus(limit: 10, remaining: 0, resetMillis: Self.minute))
    }

    @Test(arguments: [(0, 60), (1, 60), (12_345, 48), (59_000, 1), (59_999, 1)] as [(UInt64, UInt64)])
    func admit_fixedWindow_rejectionCarriesRemainingAndReset(offset: UInt64, retryAfterSeconds: UInt64) {
        let rule = LimitRule(key: "vk:a", requestsPerWindow: 3, tokensPerWindow: nil, mode: .fixed)
        var limiter = ClusterLimiter()
        let now = Self.w0 + offset
        let (n, refusal) = Self.admitUntilRefused(&limiter, [rule], at: now)
        #expect(n == 3)
        let expected = RateLimitRejection(
            rule: rule, unit: .requests, status: LimitStatus(limit: 3, remaining: 0, resetMillis: Self.minute - offset))
        #expect(refusal == .rejected(expected))
        #expect(expected.retryAfterSeconds == retryAfterSeconds)
    }

    @Test func admit_fixedWindow_startsAfreshAtTheBoundary() {
        let rule = LimitRule(key: "vk:a", requestsPerWindow: 2, tokensPerWindow: nil, mode: .fixed)
        var counts = FakeCounts()
        counts.peerRequests[Self.id("vk:a", Self.w0)] = 2
        var limiter = ClusterLimiter()
        #expect(!Self.admit(&limiter, [rule], at: Self.w0 + Self.minute - 1, counts).isAdmitted)
        #expect(Self.admitUntilRefused(&limiter, [rule], at: Self.w0 + Self.minute, counts).admitted == 2)
    }

    /// Previous window: 10 peer admissions (the whole limit). Offset into the current window →
    /// admissions allowed now, as `10 × (1 − offset/60 s) + admitted + 1 ≤ 10`.
    @Test(
        arguments: [
            (0, 0), (15_000, 2), (30_000, 5), (45_000, 7), (59_999, 9),
        ] as [(UInt64, Int)])
    func admit_slidingWindow_weightsThePreviousWindowByItsOverlap(offset: UInt64, admits: Int) {
        let rule = LimitRule(key: "vk:a", requestsPerWindow: 10, tokensPerWindow: nil, mode: .sliding)
        var counts = FakeCounts()
        counts.peerRequests[Self.id("vk:a", Self.w0 - Self.minute)] = 10
        var limiter = ClusterLimiter()
        let (n, refusal) = Self.admitUntilRefused(&limiter, [rule], at: Self.w0 + offset, counts)
        #expect(n == admits)
        guard case .rejected(let r) = refusal else {
            Issue.record("expected a rejection, got \(refusal)")
            return
        }
        #expect(r.status.remaining == 0)
        // The same counts under a fixed window: the previous window no longer matters.
        var fixed = ClusterLimiter()
        var fixedRule = rule
        fixedRule.mode = .fixed
        #expect(Self.admitUntilRefused(&fixed, [fixedRule], at: Self.w0 + offset, counts).admitted == 10)
    }

    @Test func admit_slidingWindow_resetIsWhenThePreviousWindowHasDecayedEnough() {
        let rule = LimitRule(key: "vk:a", requestsPerWindow: 10, tokensPerWindow: nil, mode: .sliding)
        var counts = FakeCounts()
        counts.peerRequests[Self.id("vk:a", Self.w0 - Self.minute)] = 10
        var limiter = ClusterLimiter()
        let now = Self.w0 + 15_000
        // 7.5 + 2 own: the third is refused until 10 × overlap + 2 + 1 ≤ 10, i.e. overlap 0.7 at +18 s.
        let (n, refusal) = Self.admitUntilRefused(&limiter, [rule], at: now, counts)
        #expect(n == 2)
        guard case .rejected(let r) = refusal else {
            Issue.record("expected a rejection, got \(refusal)")
            return
        }
        #expect(r.status.resetMillis == 3_000)
        #expect(r.retryAfterSeconds == 3)
        #expect(!Self.admit(&limiter, [rule], at: now + 2_000, counts).isAdmitted)
        #expect(Self.admit(&limiter, [rule], at: now + r.status.resetMillis, counts).isAdmitted)
    }

    @Test func admit_tokenLimit_refusesOnceTheWindowsTokensReachIt() {
        let rule = LimitRule(key: "vk:a", requestsPerWindow: nil, tokensPerWindow: 1_000)
        var counts = FakeCounts()
        counts.peerTokens[Self.id("vk:a", Self.w0)] = 300
        counts.ownTokens[Self.id("vk:a", Self.w0)] = 100
        var limiter = ClusterLimiter()
        #expect(Self.admit(&limiter, [rule], at: Self.w0, counts).isAdmitted)
        limiter.recordTokens(rules: [rule], tokens: 599, nowMillis: Self.w0 + 10, counts: counts)
        #expect(
            limiter.status(rule: rule, nowMillis: Self.w0 + 10, liveNodes: 1, counts: counts)
                == LimitStatus(limit: 1_000, remaining: 1, resetMillis: Self.minute - 10))
        // 999 used: still admitted (a request in flight may overshoot).
        #expect(Self.admit(&limiter, [rule], at: Self.w0 + 10, counts).isAdmitted)
        limiter.recordTokens(rules: [rule], tokens: 1, nowMillis: Self.w0 + 20, counts: counts)
        let refusal = Self.admit(&limiter, [rule], at: Self.w0 + 20, counts)
        #expect(
            refusal
                == .rejected(
                    RateLimitRejection(
                        rule: rule, unit: .tokens,
                        status: LimitStatus(limit: 1_000, remaining: 0, resetMillis: Self.minute - 20))))
        // The next window has its own budget.
        #expect(Self.admit(&limiter, [rule], at: Self.w0 + Self.minute, counts).isAdmitted)
    }

    @Test func admit_severalRules_chargesEveryWindow_andARefusalChargesNone() {
        let tight = LimitRule(key: "pk:k1", requestsPerWindow: 2, tokensPerWindow: nil, windowMillis: 1_000)
        let loose = LimitRule(key: "vk:a", requestsPerWindow: 100, tokensPerWindow: nil)
        var limiter = ClusterLimiter()
        let now = Self.w0 + 1_500
        guard
            case .admitted(let seq, let windows) = limiter.admit(
                rules: [loose, tight], nowMillis: now, liveNodes: 1, counts: FakeCounts())
        else {
            Issue.record("expected an admission")
            return
        }
        #expect(seq == 1)
        #expect(windows.map { $0.key } == ["vk:a", "pk:k1"])
        #expect(windows.map { $0.windowStart } == [Self.w0, Self.w0 + 1_000])
        #expect(Self.admit(&limiter, [loose, tight], at: now) == .admitted(seq: 2))
        guard case .rejected(let r) = Self.admit(&limiter, [loose, tight], at: now) else {
            Issue.record("expected the tight rule to refuse")
            return
        }
        #expect(r.rule == tight)
        #expect(r.status.resetMillis == 500)
        // Only the two admissions were charged to the loose rule.
        #expect(
            limiter.status(rule: loose, nowMillis: now, liveNodes: 1, counts: FakeCounts())?.remaining == 98)
        #expect(
            limiter.status(
                rule: LimitRule(key: "x", requestsPerWindow: nil, tokensPerWindow: nil), nowMillis: now, liveNodes: 1,
                counts: FakeCounts()) == nil)
    }

    /// With N live nodes and nothing confirmed, a node holds at most ceil((limit − K) / N) of the
    /// headroom; K grows with each of its own admissions. liveNodes ≤ 1 means no sharing.
    @Test(
        arguments: [
            (1, 10), (0, 10), (-2, 10), (2, 4), (3, 3), (5, 2), (10, 1), (50, 1),
        ] as [(Int, Int)])
    func admit_withLiveNodes_holdsAtMostItsShareUnconfirmed(liveNodes: Int, burst: Int) {
        let rule = LimitRule(key: "vk:a", requestsPerWindow: 10, tokensPerWindow: nil)
        var limiter = ClusterLimiter()
        let (n, refusal) = Self.admitUntilRefused(&limiter, [rule], at: Self.w0, live: liveNodes)
        #expect(n == burst)
        if liveNodes > 1 {
            #expect(
                refusal
                    == .awaitConfirmation(
                        RateLimitRejection(
                            rule: rule, unit: .requests,
                            status: LimitStatus(limit: 10, remaining: UInt64(10 - burst), resetMillis: 1))))
        } else {
            guard case .rejected = refusal else {
                Issue.record("a single node is refused only at the limit, got \(refusal)")
                return
            }
        }
    }

    /// The documented bound: N nodes that never see each other admit at most limit + N − 1.
    @Test(arguments: [1, 2, 3, 4, 5, 7, 10, 100])
    func admit_partitionedNodes_admitAtMostLimitPlusNMinusOne(limit: UInt64) {
        let rule = LimitRule(key: "vk:a", requestsPerWindow: limit, tokensPerWindow: nil)
        for nodes in 2...12 {
            var total = 0
            for _ in 0..<nodes {
                var limiter = ClusterLimiter()
                total += Self.admitUntilRefused(&limiter, [rule], at: Self.w0, live: nodes).admitted
            }
            #expect(total <= Int(limit) + nodes - 1, "\(nodes) nodes, limit \(limit): \(total) admitted")
            #expect(total >= 1)
        }
    }

    @Test func confirm_through_releasesOnlyAdmissionsUpToSeq() {
        let rule = LimitRule(key: "vk:a", requestsPerWindow: 10, tokensPerWindow: nil)
        var limiter = ClusterLimiter()
        // 3 live nodes: 3 unconfirmed admissions (seq 1, 2, 3), then wait.
        #expect(Self.admitUntilRefused(&limiter, [rule], at: Self.w0, live: 3).admitted == 3)
        limiter.confirm(through: 0)
        #expect(!Self.admit(&limiter, [rule], at: Self.w0, live: 3).isAdmitted)
        // Seq 1 confirmed: K = 3, share ceil(7/3) = 3, 2 unconfirmed → exactly one more (seq 4).
        limiter.confirm(through: 1)
        #expect(Self.admit(&limiter, [rule], at: Self.w0, live: 3) == .admitted(seq: 4))
        #expect(!Self.admit(&limiter, [rule], at: Self.w0, live: 3).isAdmitted)
        // Everything confirmed: K = 4, share ceil(6/3) = 2.
        limiter.confirm(through: 4)
        #expect(Self.admitUntilRefused(&limiter, [rule], at: Self.w0, live: 3).admitted == 2)
    }

    @Test func confirm_repeatedly_reachesExactlyTheLimit() {
        let rule = LimitRule(key: "vk:a", requestsPerWindow: 25, tokensPerWindow: nil)
        var limiter = ClusterLimiter()
        var admitted = 0
        var lastSeq: UInt64 = 0
        for _ in 0..<100 {
            switch Self.admit(&limiter, [rule], at: Self.w0, live: 4) {
            case .admitted(let seq):
                #expect(seq == lastSeq + 1, "sequence numbers count up")
                lastSeq = seq
                admitted += 1
            case .awaitConfirmation:
                limiter.confirm(through: lastSeq)
            case .rejected:
                #expect(admitted == 25)
                return
            }
        }
        Issue.record("never rejected; admitted \(admitted)")
    }

    @Test func prune_dropsCountersOlderThanThePreviousWindow() {
        let rule = LimitRule(key: "vk:a", requestsPerWindow: 10, tokensPerWindow: nil)
        var limiter = ClusterLimiter()
        for k: UInt64 in 0..<3 { _ = Self.admit(&limiter, [rule], at: Self.w0 + k * Self.minute) }
        #expect(limiter.counterCount == 3)
        limiter.prune(nowMillis: Self.w0 + 2 * Self.minute)
        #expect(limiter.counterCount == 2, "the current and the previous window stay (sliding reads it)")
        limiter.prune(nowMillis: Self.w0 + 4 * Self.minute)
        #expect(limiter.counterCount == 0)
    }
}
