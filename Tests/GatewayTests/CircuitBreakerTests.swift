import Testing

@testable import Gateway

/// The per-key circuit breaker as a pure state machine: time is the `nowMillis` passed in.
@Suite struct CircuitBreakerTests {
    static let t0: UInt64 = 1_700_000_000_000

    /// Settings where only the consecutive-failure rule can trip.
    static func consecutiveOnly(threshold: Int) -> CircuitBreaker.Settings {
        var s = CircuitBreaker.Settings()
        s.failureThreshold = threshold
        s.minimumSamples = 1_000
        s.windowSize = 1_000
        return s
    }

    /// Settings where only the failure-rate rule can trip.
    static func rateOnly(window: Int, minimumSamples: Int, rate: Double) -> CircuitBreaker.Settings {
        var s = CircuitBreaker.Settings()
        s.failureThreshold = 1_000
        s.windowSize = window
        s.minimumSamples = minimumSamples
        s.failureRateThreshold = rate
        return s
    }

    /// A breaker opened by `failureThreshold` failures at `t0`.
    static func opened(_ settings: CircuitBreaker.Settings = .init()) -> CircuitBreaker {
        var b = CircuitBreaker(settings: settings)
        for _ in 0..<settings.failureThreshold { b.record(success: false, nowMillis: t0) }
        return b
    }

    @Test(arguments: [1, 3, 5])
    func onFailure_afterThreshold_opensAndRejects(threshold: Int) {
        var b = CircuitBreaker(settings: Self.consecutiveOnly(threshold: threshold))
        for i in 0..<(threshold - 1) {
            b.record(success: false, nowMillis: Self.t0 + UInt64(i))
            #expect(b.state == .closed, "after \(i + 1) of \(threshold) failures")
            #expect(b.allowRequest(nowMillis: Self.t0 + UInt64(i)) == true)
        }
        b.record(success: false, nowMillis: Self.t0 + 100)
        #expect(b.state == .open(untilMillis: Self.t0 + 100 + 30_000))
        #expect(b.state.name == "open")
        #expect(!b.canAttempt(nowMillis: Self.t0 + 101))
        #expect(b.allowRequest(nowMillis: Self.t0 + 101) == false)
    }

    @Test func onSuccess_betweenFailures_resetsTheConsecutiveCount() {
        var b = CircuitBreaker(settings: Self.consecutiveOnly(threshold: 5))
        for _ in 0..<4 { b.record(success: false, nowMillis: Self.t0) }
        b.record(success: true, nowMillis: Self.t0)
        for _ in 0..<4 { b.record(success: false, nowMillis: Self.t0) }
        #expect(b.state == .closed)
        b.record(success: false, nowMillis: Self.t0)
        #expect(b.state == .open(untilMillis: Self.t0 + 30_000))
    }

    @Test func onFailureRate_atMinimumSamples_opens() {
        // F S F S … never two failures in a row; the 10th outcome makes 5 of 10 = 50 %.
        var b = CircuitBreaker(settings: Self.rateOnly(window: 20, minimumSamples: 10, rate: 0.5))
        for i in 0..<9 {
            b.record(success: i % 2 == 1, nowMillis: Self.t0)
            #expect(b.state == .closed, "outcome \(i + 1) is below minimumSamples")
        }
        b.record(success: true, nowMillis: Self.t0 + 7)
        #expect(b.state == .open(untilMillis: Self.t0 + 7 + 30_000))
    }

    @Test func onFailureRate_countsOnlyTheLastWindowSizeOutcomes() {
        // 8 successes then 3 failures: 3 of 11 overall, but 3 of the last 4.
        var b = CircuitBreaker(settings: Self.rateOnly(window: 4, minimumSamples: 4, rate: 0.75))
        for _ in 0..<8 { b.record(success: true, nowMillis: Self.t0) }
        b.record(success: false, nowMillis: Self.t0)
        b.record(success: false, nowMillis: Self.t0)
        #expect(b.state == .closed)
        b.record(success: false, nowMillis: Self.t0)
        #expect(b.state == .open(untilMillis: Self.t0 + 30_000))
    }

    @Test func whileOpen_rejectsUntilOpenDuration_thenLetsOneProbeThrough() {
        var b = Self.opened()
        let until = Self.t0 + 30_000
        let cases: [(now: UInt64, retryAfter: UInt64?)] = [
            (Self.t0, 30_000), (Self.t0 + 1, 29_999), (until - 1, 1),
        ]
        for c in cases {
            #expect(!b.canAttempt(nowMillis: c.now))
            #expect(b.retryAfterMillis(nowMillis: c.now) == c.retryAfter)
            #expect(b.allowRequest(nowMillis: c.now) == false)
            #expect(b.state == .open(untilMillis: until))
        }
        #expect(b.canAttempt(nowMillis: until))
        #expect(b.retryAfterMillis(nowMillis: until) == nil)
        #expect(b.allowRequest(nowMillis: until) == true)
        #expect(b.state == .halfOpen(probing: true))
        #expect(b.state.name == "half_open")
        // The probe is out: nobody else gets through until it reports.
        #expect(!b.canAttempt(nowMillis: until + 1))
        #expect(b.allowRequest(nowMillis: until + 1) == false)
        #expect(b.allowRequest(nowMillis: until + 60_000) == false)
    }

    @Test func halfOpen_probeSuccess_closesAndForgetsEarlierFailures() {
        var b = Self.opened()
        #expect(b.allowRequest(nowMillis: Self.t0 + 30_000) == true)
        b.record(success: true, nowMillis: Self.t0 + 30_010)
        #expect(b.state == .closed)
        #expect(b.state.name == "closed")
        // A fresh count: four failures are not enough again.
        for _ in 0..<4 { b.record(success: false, nowMillis: Self.t0 + 30_020) }
        #expect(b.state == .closed)
        b.record(success: false, nowMillis: Self.t0 + 30_020)
        #expect(b.state == .open(untilMillis: Self.t0 + 30_020 + 30_000), "back to the base open duration")
    }

    @Test func halfOpen_probeFailure_reopensForTwiceAsLong_upToMax() {
        var b = Self.opened()
        var now = Self.t0 + 30_000
        // 30 s base, 300 s max: each failed probe doubles the open time until the cap.
        for expected: UInt64 in [60_000, 120_000, 240_000, 300_000, 300_000] {
            #expect(b.allowRequest(nowMillis: now) == true)
            b.record(success: false, nowMillis: now + 5)
            #expect(b.state == .open(untilMillis: now + 5 + expected))
            now = now + 5 + expected
        }
        // A successful probe resets the open time to the base.
        #expect(b.allowRequest(nowMillis: now) == true)
        b.record(success: true, nowMillis: now)
        for _ in 0..<5 { b.record(success: false, nowMillis: now) }
        #expect(b.state == .open(untilMillis: now + 30_000))
    }

    @Test func whileOpen_lateResults_changeNothing() {
        var b = Self.opened()
        let before = b
        b.record(success: true, nowMillis: Self.t0 + 10)
        b.record(success: false, nowMillis: Self.t0 + 20)
        #expect(b == before)
    }

    @Test func forceOpen_fromClosed_rejectsUntilTheGivenTime_thenProbes() {
        var b = CircuitBreaker()
        b.forceOpen(untilMillis: Self.t0 + 45_000)
        #expect(b.state == .open(untilMillis: Self.t0 + 45_000))
        #expect(b.allowRequest(nowMillis: Self.t0 + 44_999) == false)
        #expect(b.retryAfterMillis(nowMillis: Self.t0 + 40_000) == 5_000)
        #expect(b.allowRequest(nowMillis: Self.t0 + 45_000) == true)
        #expect(b.state == .halfOpen(probing: true))
        b.record(success: true, nowMillis: Self.t0 + 45_100)
        #expect(b.state == .closed)
    }

    @Test func forceOpen_whileHalfOpen_replacesTheProbe() {
        var b = Self.opened()
        #expect(b.allowRequest(nowMillis: Self.t0 + 30_000) == true)
        b.forceOpen(untilMillis: Self.t0 + 90_000)
        #expect(b.allowRequest(nowMillis: Self.t0 + 89_999) == false)
        #expect(b.retryAfterMillis(nowMillis: Self.t0 + 60_000) == 30_000)
        #expect(b.allowRequest(nowMillis: Self.t0 + 90_000) == true)
    }

    @Test func settings_durations_areHonouredInMilliseconds() {
        var s = Self.consecutiveOnly(threshold: 1)
        s.openDuration = .milliseconds(1_500)
        s.maxOpenDuration = .milliseconds(2_000)
        var b = CircuitBreaker(settings: s)
        b.record(success: false, nowMillis: Self.t0)
        #expect(b.state == .open(untilMillis: Self.t0 + 1_500))
        #expect(b.allowRequest(nowMillis: Self.t0 + 1_500) == true)
        b.record(success: false, nowMillis: Self.t0 + 1_500)
        #expect(b.state == .open(untilMillis: Self.t0 + 1_500 + 2_000), "3 s doubled, capped at 2 s")
    }
}
