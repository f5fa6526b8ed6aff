import EventLog
import Testing

@testable import Gateway

/// Spend the views hold, for the limiter: this node's and the peers' per account, by period.
struct SpendStub: PeerCounts {
    var own: [String: UInt64] = [:]
    var peers: [String: UInt64] = [:]
    func peerRequests(key: String, windowStart: UInt64, windowMillis: UInt64) -> UInt64 { 0 }
    func ownRequests(key: String, windowStart: UInt64, windowMillis: UInt64) -> UInt64 { 0 }
    func peerTokens(key: String, windowStart: UInt64, windowMillis: UInt64) -> UInt64 { 0 }
    func ownTokens(key: String, windowStart: UInt64, windowMillis: UInt64) -> UInt64 { 0 }
    func peerSpend(account: String, start: UInt64, end: UInt64) -> UInt64 { peers[account] ?? 0 }
    func ownSpend(account: String, start: UInt64, end: UInt64) -> UInt64 { own[account] ?? 0 }
}

@Suite struct BudgetTests {
    static let day: UInt64 = 86_400_000
    /// 2026-12-02T10:00:00Z, a Wednesday.
    static let now: UInt64 = 1_796_205_600_000

    static func rule(_ micros: UInt64, _ period: BudgetPeriod = .month) -> LimitRule {
        LimitRule(
            key: "vk:team-a", requestsPerWindow: nil, tokensPerWindow: nil,
            budget: BudgetLimit(maxMicros: micros, period: period))
    }

    @Test func periodsAreUTCDaysWeeksMonthsAndAllTime() {
        let d = BudgetPeriod.day.window(containing: Self.now)
        #expect(d.start == 1_796_169_600_000 && d.end == d.start + Self.day)
        let w = BudgetPeriod.week.window(containing: Self.now)
        // Monday 2026-11-30.
        #expect(w.start == 1_796_169_600_000 - 2 * Self.day && w.end == w.start + 7 * Self.day)
        let m = BudgetPeriod.month.window(containing: Self.now)
        #expect(m.start == 1_796_083_200_000)  // 2026-12-01
        #expect(m.end == 1_798_761_600_000)  // 2027-01-01
        // The last millisecond of a month is in it; the next starts the next one.
        #expect(BudgetPeriod.month.window(containing: m.end - 1).start == m.start)
        #expect(BudgetPeriod.month.window(containing: m.end).start == m.end)
        // February of a leap year has 29 days.
        let feb = BudgetPeriod.month.window(containing: 1_709_208_000_000)  // 2024-02-29T12:00Z
        #expect(feb.end - feb.start == 29 * Self.day)
        let thirty = BudgetPeriod.thirtyDays.window(containing: Self.now)
        #expect(thirty.start % (30 * Self.day) == 0 && thirty.end - thirty.start == 30 * Self.day)
        #expect(BudgetPeriod.total.window(containing: Self.now) == (0, .max))
        for days in [0, 59, 365, 10_957, 20_788, -1] as [Int64] {
            let (y, mo, dd) = BudgetPeriod.civil(days: days)
            #expect(BudgetPeriod.days(year: y, month: mo, day: dd) == days)
        }
    }

    @Test func oneNodeHoldsEstimatesInFlightAndChargesWhatRequestsCost() {
        var limiter = ClusterLimiter()
        var counts = SpendStub()
        counts.own["vk:team-a"] = 400
        let rule = Self.rule(1_000)
        var seqs: [UInt64] = []
        // 400 spent: six estimates of 100 fit, the seventh does not.
        for _ in 0..<6 {
            guard
                case .admitted(let seq, _) = limiter.admit(
                    rules: [rule], nowMillis: Self.now, liveNodes: 1, estimateMicros: 100, counts: counts)
            else {
                Issue.record("not admitted")
                return
            }
            seqs.append(seq)
        }
        guard
            case .rejected(let refusal) = limiter.admit(
                rules: [rule], nowMillis: Self.now, liveNodes: 1, estimateMicros: 100, counts: counts)
        else {
            Issue.record("admitted past the budget")
            return
        }
        #expect(refusal.unit == .budget && refusal.status.remaining == 0)
        #expect(refusal.status.resetAtMillis == 1_798_761_600_000)
        // Two finish at 30 each: 460 spent, 400 held, room for one more of 100.
        for seq in seqs.prefix(2) {
            limiter.release(seq: seq)
            #expect(
                limiter.recordSpend(rules: [rule], micros: 30, nowMillis: Self.now, liveNodes: 1, counts: counts) == nil
            )
        }
        #expect(limiter.budgetStatus(rule: rule, nowMillis: Self.now, counts: counts)?.remaining == 140)
        guard
            case .admitted = limiter.admit(
                rules: [rule], nowMillis: Self.now, liveNodes: 1, estimateMicros: 100, counts: counts)
        else {
            Issue.record("the released estimates were not returned")
            return
        }
        // A request estimated above what is left is refused even with nothing else held.
        for seq in seqs.dropFirst(2) { limiter.release(seq: seq) }
        #expect(
            {
                if case .rejected = limiter.admit(
                    rules: [rule], nowMillis: Self.now, liveNodes: 1, estimateMicros: 500, counts: counts)
                {
                    return true
                }
                return false
            }())
        // The next period starts empty (its spend is what the views hold for it).
        let nextMonth = BudgetPeriod.month.window(containing: Self.now).end
        guard
            case .admitted = limiter.admit(
                rules: [rule], nowMillis: nextMonth, liveNodes: 1, estimateMicros: 500, counts: SpendStub())
        else {
            Issue.record("a new period did not start empty")
            return
        }
    }

    @Test func peersSpendCountsAndEachNodeKeepsToItsShareUntilConfirmed() {
        var limiter = ClusterLimiter()
        var counts = SpendStub()
        counts.peers["vk:team-a"] = 300
        let rule = Self.rule(1_200)
        // Headroom 900 over 3 live nodes: a share of 300, three estimates of 100.
        var admitted: [UInt64] = []
        for _ in 0..<3 {
            if case .admitted(let seq, _) = limiter.admit(
                rules: [rule], nowMillis: Self.now, liveNodes: 3, estimateMicros: 100, counts: counts)
            {
                admitted.append(seq)
            }
        }
        #expect(admitted.count == 3)
        guard
            case .awaitConfirmation = limiter.admit(
                rules: [rule], nowMillis: Self.now, liveNodes: 3, estimateMicros: 100, counts: counts)
        else {
            Issue.record("held more than its share")
            return
        }
        // They finish; their spend stays unconfirmed until peers acknowledge it.
        var spendSeq: UInt64 = 0
        for seq in admitted {
            limiter.release(seq: seq)
            spendSeq = limiter.recordSpend(
                rules: [rule], micros: 100, nowMillis: Self.now, liveNodes: 3, counts: counts)!
        }
        guard
            case .awaitConfirmation = limiter.admit(
                rules: [rule], nowMillis: Self.now, liveNodes: 3, estimateMicros: 100, counts: counts)
        else {
            Issue.record("unconfirmed spend did not count against the share")
            return
        }
        limiter.confirm(through: spendSeq)
        // 600 spent now: headroom 600, share 200.
        guard
            case .admitted = limiter.admit(
                rules: [rule], nowMillis: Self.now, liveNodes: 3, estimateMicros: 100, counts: counts)
        else {
            Issue.record("confirmed spend still held the share")
            return
        }
    }

    /// One node's turn: admit a request estimated at 10, finish it at 10, peers confirm at once.
    static func spendOnce(_ limiter: inout ClusterLimiter, live: Int, peers: UInt64) -> Bool {
        let rule = Self.rule(900)
        let counts = SpendStub(peers: ["vk:team-a": peers])
        guard
            case .admitted(let seq, _) = limiter.admit(
                rules: [rule], nowMillis: Self.now, liveNodes: live, knownNodes: 3, estimateMicros: 10, counts: counts)
        else { return false }
        limiter.release(seq: seq)
        if let spendSeq = limiter.recordSpend(
            rules: [rule], micros: 10, nowMillis: Self.now, liveNodes: live, knownNodes: 3, counts: counts)
        {
            limiter.confirm(through: spendSeq)
        }
        return true
    }

    @Test func duringAPartitionEachSideKeepsToItsShareOfTheHeadroomItSaw() {
        // Three nodes know each other and nothing is spent yet; one is cut off alone, two together.
        var alone = ClusterLimiter()
        var spentAlone: UInt64 = 0
        while Self.spendOnce(&alone, live: 1, peers: 0) { spentAlone += 10 }
        var a = ClusterLimiter()
        var b = ClusterLimiter()
        var (spentA, spentB): (UInt64, UInt64) = (0, 0)
        var going = true
        while going {
            going = false
            if Self.spendOnce(&a, live: 2, peers: spentB) {
                spentA += 10
                going = true
            }
            if Self.spendOnce(&b, live: 2, peers: spentA) {
                spentB += 10
                going = true
            }
        }
        // Each side got its share of the 900 it saw: a third alone, two thirds for the pair.
        #expect(spentAlone == 300)
        #expect(spentA + spentB == 600)
        #expect(spentAlone + spentA + spentB <= 900)
    }
}
