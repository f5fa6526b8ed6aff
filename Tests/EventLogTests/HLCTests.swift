import Testing

@testable import EventLog

@Suite struct HLCTests {
    typealias T = HLCTimestamp

    @Test func timestamp_packsWallAndLogical_andOrdersLikeThePair() {
        let t = T(wallMillis: 1_764_000_000_123, logical: 7)
        #expect(t.wallMillis == 1_764_000_000_123)
        #expect(t.logical == 7)
        #expect(T(wallMillis: 5, logical: 65535) < T(wallMillis: 6, logical: 0))
        #expect(T(wallMillis: 5, logical: 1) < T(wallMillis: 5, logical: 2))
    }

    struct LocalCase: Sendable, CustomTestStringConvertible {
        var name: String
        var last: T
        var physical: UInt64
        var expected: T
        var testDescription: String { name }
    }

    @Test(arguments: [
        LocalCase(
            name: "physical ahead resets logical", last: T(wallMillis: 100, logical: 5), physical: 200,
            expected: T(wallMillis: 200, logical: 0)),
        LocalCase(
            name: "same millisecond increments logical", last: T(wallMillis: 100, logical: 5), physical: 100,
            expected: T(wallMillis: 100, logical: 6)),
        LocalCase(
            name: "physical behind (clock jumped back) keeps wall", last: T(wallMillis: 100, logical: 5), physical: 40,
            expected: T(wallMillis: 100, logical: 6)),
        LocalCase(
            name: "logical overflow advances wall by 1 ms", last: T(wallMillis: 100, logical: 65535), physical: 100,
            expected: T(wallMillis: 101, logical: 0)),
        LocalCase(name: "from zero", last: .zero, physical: 1, expected: T(wallMillis: 1, logical: 0)),
    ])
    func now_followsTheSendRule(_ c: LocalCase) {
        var clock = HybridLogicalClock(last: c.last)
        #expect(clock.now(physicalMillis: c.physical) == c.expected)
        #expect(clock.last == c.expected)
    }

    struct ReceiveCase: Sendable, CustomTestStringConvertible {
        var name: String
        var last: T
        var remote: T
        var physical: UInt64
        var expected: T
        var testDescription: String { name }
    }

    @Test(arguments: [
        ReceiveCase(
            name: "physical dominates", last: T(wallMillis: 100, logical: 3), remote: T(wallMillis: 90, logical: 9),
            physical: 150, expected: T(wallMillis: 150, logical: 0)),
        ReceiveCase(
            name: "remote dominates", last: T(wallMillis: 100, logical: 3), remote: T(wallMillis: 120, logical: 9),
            physical: 110, expected: T(wallMillis: 120, logical: 10)),
        ReceiveCase(
            name: "local dominates", last: T(wallMillis: 130, logical: 3), remote: T(wallMillis: 120, logical: 9),
            physical: 110, expected: T(wallMillis: 130, logical: 4)),
        ReceiveCase(
            name: "local and remote tie", last: T(wallMillis: 130, logical: 3), remote: T(wallMillis: 130, logical: 9),
            physical: 110, expected: T(wallMillis: 130, logical: 10)),
        ReceiveCase(
            name: "tie at max logical overflows into wall", last: T(wallMillis: 130, logical: 65535),
            remote: T(wallMillis: 130, logical: 65535), physical: 110, expected: T(wallMillis: 131, logical: 0)),
        ReceiveCase(
            name: "remote within max offset is accepted", last: T(wallMillis: 100, logical: 0),
            remote: T(wallMillis: 600, logical: 2), physical: 100, expected: T(wallMillis: 600, logical: 3)),
    ])
    func receive_followsTheThreeWayRule(_ c: ReceiveCase) throws {
        var clock = HybridLogicalClock(last: c.last, maxOffsetMillis: 500)
        #expect(try clock.receive(c.remote, physicalMillis: c.physical) == c.expected)
    }

    @Test func receive_beyondMaxOffset_throwsAndDoesNotMoveTheClock() {
        var clock = HybridLogicalClock(last: T(wallMillis: 1000, logical: 4), maxOffsetMillis: 500)
        let remote = T(wallMillis: 1000 + 501, logical: 0)
        #expect(throws: HybridLogicalClock.ReceiveError.self) { try clock.receive(remote, physicalMillis: 1000) }
        #expect(clock.last == T(wallMillis: 1000, logical: 4))
        #expect(clock.now(physicalMillis: 1000) == T(wallMillis: 1000, logical: 5))
    }

    @Test func skewedPeers_exchangingMessages_stayMonotonicAndBounded() throws {
        // Node B's physical clock runs 300 ms ahead of A's; messages bounce for a while.
        var a = HybridLogicalClock()
        var b = HybridLogicalClock()
        var physical: UInt64 = 10_000
        var lastA = T.zero
        var lastB = T.zero
        for step in 0..<5_000 {
            physical += UInt64(step % 3)
            let sentByA = a.now(physicalMillis: physical)
            #expect(sentByA > lastA)
            lastA = sentByA
            let atB = try b.receive(sentByA, physicalMillis: physical + 300)
            #expect(atB > sentByA && atB > lastB)
            lastB = atB
            let backAtA = try a.receive(atB, physicalMillis: physical)
            #expect(backAtA > atB)
            lastA = backAtA
            // HLC never drifts further than the skew from the fastest physical clock.
            #expect(a.last.wallMillis <= physical + 300)
        }
    }

    @Test func advance_toPersistedBound_preventsGoingBackwardsAfterRestart() {
        var clock = HybridLogicalClock()
        clock.advance(toAtLeast: T(wallMillis: 5_000, logical: 9))
        // The machine's clock now reads earlier than before the restart.
        #expect(clock.now(physicalMillis: 4_000) == T(wallMillis: 5_000, logical: 10))
        clock.advance(toAtLeast: T(wallMillis: 10, logical: 0))
        #expect(clock.last == T(wallMillis: 5_000, logical: 10))
    }
}
