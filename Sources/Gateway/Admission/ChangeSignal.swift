import Synchronization

/// A condition that waiters sleep on until something changes or a deadline passes, without
/// polling: `signal()` wakes every waiter, and a waiter that read `generation` before checking
/// its condition can never miss a change made after that read.
///
/// ```swift
/// while true {
///     let seen = signal.generation
///     if conditionHolds() { return true }
///     guard await signal.wait(after: seen, until: deadline) else { return false }
/// }
/// ```
final class ChangeSignal: Sendable {
    private struct State {
        var generation: UInt64 = 0
        var nextWaiter: UInt64 = 0
        var waiters: [UInt64: CheckedContinuation<Bool, Never>] = [:]
    }

    private let state = Mutex(State())

    /// Changes seen so far.
    var generation: UInt64 { state.withLock { $0.generation } }

    /// Waiters asleep now.
    var waiterCount: Int { state.withLock { $0.waiters.count } }

    /// Something changed: every waiter wakes.
    func signal() {
        let woken = state.withLock { s -> [CheckedContinuation<Bool, Never>] in
            s.generation &+= 1
            guard !s.waiters.isEmpty else { return [] }
            defer { s.waiters.removeAll(keepingCapacity: true) }
            return Array(s.waiters.values)
        }
        for waiter in woken { waiter.resume(returning: true) }
    }

    /// Sleeps until a change after `generation`, or `deadline`, or cancellation; true when a
    /// change woke it (at once when one happened already).
    func wait(after generation: UInt64, until deadline: ContinuousClock.Instant) async -> Bool {
        let id = state.withLock { s -> UInt64 in
            s.nextWaiter &+= 1
            return s.nextWaiter
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let asleep = state.withLock { s -> Bool in
                    guard s.generation == generation else { return false }
                    s.waiters[id] = continuation
                    return true
                }
                guard asleep else { return continuation.resume(returning: true) }
                Task { [self] in
                    try? await Task.sleep(until: deadline, clock: .continuous)
                    expire(id)
                }
            }
        } onCancel: {
            expire(id)
        }
    }

    private func expire(_ id: UInt64) {
        state.withLock { $0.waiters.removeValue(forKey: id) }?.resume(returning: false)
    }
}
