import Testing

@testable import Gateway

/// Waiting for a change without polling: wake-ups, deadlines and the change that came first.
@Suite struct ChangeSignalTests {
    @Test func wait_isWokenBySignal_beforeItsDeadline() async {
        let signal = ChangeSignal()
        let seen = signal.generation
        async let woken = signal.wait(after: seen, until: ContinuousClock.now + .seconds(300))
        while signal.waiterCount == 0 { await Task.yield() }
        signal.signal()
        #expect(await woken, "a wait that ends at its deadline returns false")
        #expect(signal.waiterCount == 0)
    }

    @Test func wait_withoutSignal_returnsFalseAtTheDeadline() async {
        let signal = ChangeSignal()
        let deadline = ContinuousClock.now + .milliseconds(50)
        #expect(await signal.wait(after: signal.generation, until: deadline) == false)
        #expect(ContinuousClock.now >= deadline)
        #expect(signal.waiterCount == 0)
    }

    @Test func wait_afterAChangeItHasNotSeen_returnsAtOnce() async {
        let signal = ChangeSignal()
        let seen = signal.generation
        signal.signal()
        #expect(await signal.wait(after: seen, until: ContinuousClock.now + .seconds(30)))
    }

    @Test func signal_wakesEveryWaiter() async {
        let signal = ChangeSignal()
        let seen = signal.generation
        let deadline = ContinuousClock.now + .seconds(30)
        await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<8 { group.addTask { await signal.wait(after: seen, until: deadline) } }
            while signal.waiterCount < 8 { await Task.yield() }
            signal.signal()
            var woken = 0
            for await result in group where result { woken += 1 }
            #expect(woken == 8)
        }
    }

    @Test func wait_cancelled_returnsFalse() async {
        let signal = ChangeSignal()
        let seen = signal.generation
        let task = Task { await signal.wait(after: seen, until: ContinuousClock.now + .seconds(30)) }
        while signal.waiterCount == 0 { await Task.yield() }
        task.cancel()
        #expect(await task.value == false)
    }
}
