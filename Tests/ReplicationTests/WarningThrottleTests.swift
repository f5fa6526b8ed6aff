import Testing

@testable import Replication

@Suite struct WarningThrottleTests {
    @Test func admit_logsABurstPerInterval_thenSaysHowManyItHeldBack() {
        var throttle = WarningThrottle(burst: 2, interval: .seconds(10))
        #expect(throttle.admit(now: .seconds(0)) == (true, 0))
        #expect(throttle.admit(now: .seconds(1)) == (true, 0))
        #expect(throttle.admit(now: .seconds(2)) == (false, 0))
        #expect(throttle.admit(now: .seconds(3)) == (false, 0))
        // A new interval: the first warning reports the two held back.
        #expect(throttle.admit(now: .seconds(10)) == (true, 2))
        #expect(throttle.admit(now: .seconds(11)) == (true, 0))
        #expect(throttle.admit(now: .seconds(12)) == (false, 0))
        #expect(throttle.admit(now: .seconds(40)) == (true, 1))
    }
}
