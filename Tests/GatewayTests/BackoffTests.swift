import EventLog
import Testing

@testable import Gateway

/// Exponential backoff with full jitter, and the retry rules it serves.
@Suite struct BackoffTests {
    static func draws(_ backoff: Backoff, attempt: Int, count: Int, seed: UInt64) -> [UInt64] {
        var rng = SplitMix64(seed: seed)
        return (0..<count).map { _ in backoff.delayMillis(attempt: attempt, using: &rng) }
    }

    /// (attempt, min(cap, base × 2^attempt)) for base 50 ms and cap 2 s.
    @Test(
        arguments: [
            (0, 50), (1, 100), (2, 200), (3, 400), (4, 800), (5, 1_600), (6, 2_000), (10, 2_000), (64, 2_000),
            (Int.max, 2_000), (-3, 50),
        ] as [(Int, UInt64)])
    func delayMillis_isFullJitterUnderTheExponentialCeiling(attempt: Int, ceiling: UInt64) {
        let delays = Self.draws(Backoff(baseMillis: 50, capMillis: 2_000), attempt: attempt, count: 2_000, seed: 7)
        #expect(delays.allSatisfy { $0 <= ceiling })
        // Full jitter: the whole range [0, ceiling] is used, not just its top.
        #expect(delays.max()! >= ceiling * 95 / 100, "max \(delays.max()!) of ceiling \(ceiling)")
        #expect(delays.min()! <= ceiling * 5 / 100, "min \(delays.min()!) of ceiling \(ceiling)")
        let mean = Double(delays.reduce(0, +)) / Double(delays.count)
        #expect(abs(mean - Double(ceiling) / 2) < Double(ceiling) * 0.05, "mean \(mean) of ceiling \(ceiling)")
    }

    @Test func delayMillis_sameSeed_sameDelays_otherSeed_otherDelays() {
        let backoff = Backoff()
        let a = Self.draws(backoff, attempt: 4, count: 50, seed: 42)
        #expect(a == Self.draws(backoff, attempt: 4, count: 50, seed: 42))
        #expect(a != Self.draws(backoff, attempt: 4, count: 50, seed: 43))
    }

    @Test func defaults_are50msBaseAnd2sCap() {
        let backoff = Backoff()
        #expect(backoff.baseMillis == 50)
        #expect(backoff.capMillis == 2_000)
    }

    @Test(arguments: [(0, 2_000), (50, 0), (0, 0)] as [(UInt64, UInt64)])
    func delayMillis_withZeroBaseOrCap_isZero(base: UInt64, cap: UInt64) {
        let delays = Self.draws(Backoff(baseMillis: base, capMillis: cap), attempt: 3, count: 20, seed: 1)
        #expect(delays.allSatisfy { $0 == 0 })
    }

    @Test func delayMillis_hugeBase_stillReachesTheCap() {
        // base × 2^30 does not fit in 64 bits for base ≥ 2^34 ms; the ceiling is still the cap.
        let backoff = Backoff(baseMillis: 1 << 40, capMillis: 2_000)
        let delays = Self.draws(backoff, attempt: 30, count: 200, seed: 3)
        #expect(delays.max()! > 0)
        #expect(delays.allSatisfy { $0 <= 2_000 })
    }

    @Test(arguments: [
        (UpstreamOutcome.success, RetryDecision.done, false),
        (.status(200), .done, false),
        (.status(204), .done, false),
        (.status(400), .done, false),
        (.status(404), .done, false),
        (.status(422), .done, false),
        (.status(401), .keyBad, true),
        (.status(403), .keyBad, true),
        (.status(408), .retry(backoff: true), false),
        (.status(409), .retry(backoff: true), false),
        (.status(429), .retry(backoff: true), true),
        (.status(500), .retry(backoff: true), true),
        (.status(502), .retry(backoff: true), true),
        (.status(503), .retry(backoff: true), true),
        (.status(599), .retry(backoff: true), true),
        (.timeout, .retry(backoff: true), true),
        (.connectFailed, .retry(backoff: true), true),
    ])
    func retryPolicy_followsTheRetryRules(outcome: UpstreamOutcome, decision: RetryDecision, keyFailure: Bool) {
        #expect(RetryPolicy.decide(outcome) == decision)
        #expect(RetryPolicy.isKeyFailure(outcome) == keyFailure)
    }
}
