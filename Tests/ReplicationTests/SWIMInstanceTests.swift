import EventLog
import Testing

@testable import Replication

/// Rules of the state machine, one input at a time.
@Suite struct SWIMInstanceTests {
    typealias F = SWIMFixture

    static func ms(_ n: Int64) -> Duration { .milliseconds(n) }

    // MARK: Refutation

    @Test func onPing_whenSuspected_refutesWithHigherIncarnation() {
        var a = F.instance(1, knowing: [2])
        let ping = SWIM.Message.ping(seq: 9, from: "node-2", updates: [F.update(1, .suspect, observer: "node-2")])
        let out = a.onMessage(ping, fromAddress: F.member(2).gossipAddress, now: Self.ms(10))
        #expect(a.localMember.incarnation == 1)
        #expect(a.localMember.status == .alive)
        #expect(a.localHealthMultiplier == 1, "being asked to refute counts against local health")
        let ack = out.sends.first { $0.message.isAck }
        #expect(ack?.to == F.member(2).gossipAddress)
        #expect(ack?.message.seq == 9)
        #expect(ack?.message.updates.first == SWIM.Update(a.localMember, observer: "node-1"))
        #expect(out.transitions.isEmpty)
    }

    @Test(arguments: [SWIM.Status.suspect, .dead, .left])
    func onAccusation_withIncarnationAtLeastOwn_refutesAboveIt(status: SWIM.Status) {
        var a = F.instance(1, knowing: [2])
        let claim = F.update(1, status, incarnation: 5, observer: "node-2")
        _ = a.onMessage(.ack(seq: 1, from: "node-2", updates: [claim]), fromAddress: "x", now: .zero)
        #expect(a.localMember.incarnation == 6)
        #expect(a.localMember.status == .alive)
    }

    @Test func onAccusation_withOlderIncarnation_isIgnored() {
        var a = F.instance(1, knowing: [2])
        _ = a.onMessage(
            .ack(seq: 1, from: "node-2", updates: [F.update(1, .suspect, incarnation: 5)]), fromAddress: "x", now: .zero
        )
        let stale = F.update(1, .dead, incarnation: 3, observer: "node-2")
        _ = a.onMessage(.ack(seq: 2, from: "node-2", updates: [stale]), fromAddress: "x", now: .zero)
        #expect(a.localMember.incarnation == 6)
        #expect(a.localHealthMultiplier == 1)
    }

    @Test func onAliveAboutSelf_withOtherAddressAtSameIncarnation_refutes() {
        var a = F.instance(1, knowing: [2])
        var impostor = F.update(1)
        impostor.gossipAddress = "10.9.9.9:7946"
        _ = a.onMessage(.ack(seq: 1, from: "node-2", updates: [impostor]), fromAddress: "x", now: .zero)
        #expect(a.localMember.incarnation == 1)
        _ = a.onMessage(
            .ack(seq: 1, from: "node-2", updates: [F.update(1, incarnation: 1)]), fromAddress: "x", now: .zero)
        #expect(a.localMember.incarnation == 1, "its own state echoed back needs no refutation")
    }

    @Test func afterLeave_accusationsAreNotRefuted() {
        var a = F.instance(1, knowing: [2])
        _ = a.leave(now: .zero)
        let out = a.onMessage(
            .ping(seq: 4, from: "node-2", updates: [F.update(1, .dead, incarnation: 1, observer: "node-2")]),
            fromAddress: "a2", now: .zero)
        #expect(a.localMember.status == .left)
        #expect(a.localMember.incarnation == 1)
        #expect(out.sends.first?.message.updates.first?.status == .left)
        #expect(a.onTick(now: .seconds(10)).isEmpty)
    }

    // MARK: Precedence

    struct PrecedenceCase: CustomTestStringConvertible, Sendable {
        var current: SWIM.Status
        var currentIncarnation: SWIM.Incarnation
        var claim: SWIM.Status
        var claimIncarnation: SWIM.Incarnation
        var expected: SWIM.Status
        var expectedIncarnation: SWIM.Incarnation

        var testDescription: String {
            "\(current)@\(currentIncarnation) + \(claim)@\(claimIncarnation) → \(expected)@\(expectedIncarnation)"
        }
    }

    static let precedence: [PrecedenceCase] = [
        // alive overrides only with a newer incarnation, and readmits dead and left members
        .init(
            current: .alive, currentIncarnation: 2, claim: .alive, claimIncarnation: 3, expected: .alive,
            expectedIncarnation: 3),
        .init(
            current: .alive, currentIncarnation: 2, claim: .alive, claimIncarnation: 1, expected: .alive,
            expectedIncarnation: 2),
        .init(
            current: .suspect, currentIncarnation: 2, claim: .alive, claimIncarnation: 2, expected: .suspect,
            expectedIncarnation: 2),
        .init(
            current: .suspect, currentIncarnation: 2, claim: .alive, claimIncarnation: 3, expected: .alive,
            expectedIncarnation: 3),
        .init(
            current: .dead, currentIncarnation: 2, claim: .alive, claimIncarnation: 2, expected: .dead,
            expectedIncarnation: 2),
        .init(
            current: .dead, currentIncarnation: 2, claim: .alive, claimIncarnation: 3, expected: .alive,
            expectedIncarnation: 3),
        .init(
            current: .left, currentIncarnation: 2, claim: .alive, claimIncarnation: 3, expected: .alive,
            expectedIncarnation: 3),
        // suspect overrides alive at an equal or newer incarnation, never dead or left
        .init(
            current: .alive, currentIncarnation: 2, claim: .suspect, claimIncarnation: 2, expected: .suspect,
            expectedIncarnation: 2),
        .init(
            current: .alive, currentIncarnation: 2, claim: .suspect, claimIncarnation: 1, expected: .alive,
            expectedIncarnation: 2),
        .init(
            current: .suspect, currentIncarnation: 2, claim: .suspect, claimIncarnation: 4, expected: .suspect,
            expectedIncarnation: 4),
        .init(
            current: .dead, currentIncarnation: 2, claim: .suspect, claimIncarnation: 5, expected: .dead,
            expectedIncarnation: 2),
        .init(
            current: .left, currentIncarnation: 2, claim: .suspect, claimIncarnation: 5, expected: .left,
            expectedIncarnation: 2),
        // dead and left override anything at an equal or newer incarnation; left is final for it
        .init(
            current: .alive, currentIncarnation: 2, claim: .dead, claimIncarnation: 2, expected: .dead,
            expectedIncarnation: 2),
        .init(
            current: .alive, currentIncarnation: 2, claim: .dead, claimIncarnation: 1, expected: .alive,
            expectedIncarnation: 2),
        .init(
            current: .suspect, currentIncarnation: 2, claim: .dead, claimIncarnation: 3, expected: .dead,
            expectedIncarnation: 3),
        .init(
            current: .left, currentIncarnation: 2, claim: .dead, claimIncarnation: 2, expected: .left,
            expectedIncarnation: 2),
        .init(
            current: .left, currentIncarnation: 2, claim: .dead, claimIncarnation: 3, expected: .dead,
            expectedIncarnation: 3),
        .init(
            current: .alive, currentIncarnation: 2, claim: .left, claimIncarnation: 2, expected: .left,
            expectedIncarnation: 2),
        .init(
            current: .suspect, currentIncarnation: 2, claim: .left, claimIncarnation: 2, expected: .left,
            expectedIncarnation: 2),
        .init(
            current: .dead, currentIncarnation: 2, claim: .left, claimIncarnation: 2, expected: .left,
            expectedIncarnation: 2),
        .init(
            current: .dead, currentIncarnation: 2, claim: .left, claimIncarnation: 1, expected: .dead,
            expectedIncarnation: 2),
        .init(
            current: .left, currentIncarnation: 2, claim: .left, claimIncarnation: 3, expected: .left,
            expectedIncarnation: 2),
    ]

    @Test(arguments: precedence)
    func claimAboutOtherMember_followsPrecedenceRules(_ c: PrecedenceCase) {
        var a = F.instance(1)
        let observer = "node-3"
        let setup = F.update(2, c.current, incarnation: c.currentIncarnation, observer: observer)
        _ = a.onMessage(.ack(seq: 1, from: observer, updates: [setup]), fromAddress: "x", now: .zero)
        #expect(a.member(named: "node-2")?.status == c.current)
        let claim = F.update(2, c.claim, incarnation: c.claimIncarnation, observer: "node-4")
        let out = a.onMessage(.ack(seq: 2, from: "node-4", updates: [claim]), fromAddress: "y", now: Self.ms(1))
        #expect(a.member(named: "node-2")?.status == c.expected)
        #expect(a.member(named: "node-2")?.incarnation == c.expectedIncarnation)
        let changed = out.transitions.filter { $0.member.name == "node-2" }
        if c.expected != c.current {
            #expect(changed.count == 1)
            #expect(changed.first?.previous == c.current)
        } else {
            #expect(changed.isEmpty)
        }
    }

    @Test func statusChanged_reportsFirstSightingWithoutPreviousStatus() {
        var a = F.instance(1)
        let joined = a.join(seeds: [], now: .zero)
        #expect(joined.transitions.map(\.member.name) == ["node-1"])
        #expect(joined.transitions.first?.previous == nil)
        let out = a.onMessage(
            .ping(seq: 1, from: "node-2", updates: [F.update(2), F.update(3, .dead)]), fromAddress: "x", now: .zero)
        #expect(out.transitions.map(\.member.name) == ["node-2", "node-3"])
        #expect(out.transitions.allSatisfy { $0.previous == nil })
        #expect(a.member(named: "node-3")?.status == .dead, "dead members are kept for /cluster/nodes")
        #expect(a.members.map(\.name) == ["node-1", "node-2", "node-3"])
    }

    // MARK: Probing

    /// Ticks `a` every 50 ms in `(from, to]`, collecting directives.
    static func tick(_ a: inout Instance, from: Duration, to: Duration) -> [SWIM.Directive] {
        var out: [SWIM.Directive] = []
        var t = from
        while t < to {
            t += .milliseconds(50)
            out += a.onTick(now: t)
        }
        return out
    }

    @Test func onTick_startsProbeRoundWithPingToOneMember() {
        var a = F.instance(1, knowing: [2, 3])
        let out = a.onTick(now: Self.ms(50))
        let pings = out.sends.filter { $0.message.isPing }
        #expect(pings.count == 1)
        #expect(["10.0.0.2:7946", "10.0.0.3:7946"].contains(pings.first?.to ?? ""))
        #expect(pings.first?.message.updates.first?.name == "node-1", "own state goes first")
        #expect(Self.tick(&a, from: Self.ms(50), to: Self.ms(500)).sends.isEmpty)
    }

    @Test func onTick_whenDirectPingTimesOut_asksIndirectChecksHelpers() {
        var a = F.instance(1, knowing: [2, 3, 4, 5, 6])
        let ping = a.onTick(now: Self.ms(50)).sends[0]
        #expect(Self.tick(&a, from: Self.ms(50), to: Self.ms(500)).isEmpty)
        let out = Self.tick(&a, from: Self.ms(500), to: Self.ms(550))
        let requests = out.sends.filter { $0.message.pingRequestTarget != nil }
        #expect(requests.count == 3)
        #expect(Set(requests.map(\.to)).count == 3)
        #expect(!requests.map(\.to).contains(ping.to))
        #expect(requests.allSatisfy { $0.message.pingRequestTarget == "node-\(ping.to.dropFirst(7).prefix(1))" })
        #expect(requests.allSatisfy { $0.message.seq == ping.message.seq })
    }

    @Test func failedRound_suspectsTarget_andIndirectAckPreventsIt() {
        // Without any answer the target is suspected at the end of the round.
        var a = F.instance(1, knowing: [2, 3])
        let ping = a.onTick(now: Self.ms(50)).sends[0]
        let target = ping.to == F.member(2).gossipAddress ? "node-2" : "node-3"
        let out = Self.tick(&a, from: Self.ms(50), to: Self.ms(1050))
        #expect(out.transitions.map(\.member.name) == [target])
        #expect(a.member(named: target)?.status == .suspect)

        // A helper relaying the target's ack (same seq) keeps it alive.
        var b = F.instance(1, knowing: [2, 3])
        let ping2 = b.onTick(now: Self.ms(50)).sends[0]
        let helperOut = Self.tick(&b, from: Self.ms(50), to: Self.ms(550))
        let request = helperOut.sends.first { $0.message.pingRequestTarget != nil }!
        let helper = request.to == F.member(2).gossipAddress ? "node-2" : "node-3"
        _ = b.onMessage(
            .ack(seq: ping2.message.seq, from: helper, updates: []), fromAddress: request.to, now: Self.ms(700))
        let after = Self.tick(&b, from: Self.ms(700), to: Self.ms(1100))
        #expect(after.transitions.isEmpty)
        #expect(b.members.allSatisfy { $0.status == .alive })
        #expect(b.localHealthMultiplier == 0)
    }

    static func name(at address: String) -> String {
        "node-\(address.dropFirst("10.0.0.".count).prefix { $0 != ":" })"
    }

    @Test func localHealthMultiplier_risesOnFailedProbes_andFallsOnSuccesses() {
        var a = F.instance(1, knowing: [2, 3])
        var now = Duration.zero
        var pingTimes: [Duration] = []
        var lastPing: (message: SWIM.Message, to: String)?
        // Pings go unanswered; each failed round has one helper and no nack: +1 per round. The
        // suspected member refutes at once so that both stay probe-able.
        while a.localHealthMultiplier < 3 && now < .seconds(20) {
            now += .milliseconds(50)
            let out = a.onTick(now: now)
            for send in out.sends where send.message.isPing {
                pingTimes.append(now)
                lastPing = send
            }
            for t in out.transitions where t.member.status == .suspect {
                let refutation = SWIM.Update(
                    name: t.member.name, gossipAddress: t.member.gossipAddress, apiAddress: t.member.apiAddress,
                    status: .alive, incarnation: t.member.incarnation + 1, observer: t.member.name)
                _ = a.onMessage(.ack(seq: 0, from: t.member.name, updates: [refutation]), fromAddress: "", now: now)
            }
        }
        #expect(a.localHealthMultiplier == 3)
        // Rounds stretch as local health degrades: 1 s, then 2 s, then 3 s.
        #expect(zip(pingTimes.dropFirst(), pingTimes).map { $0 - $1 } == [.seconds(1), .seconds(2), .seconds(3)])
        // From now on every ping is answered at once: −1 per round, down to 0.
        var pending = lastPing.map { [$0] } ?? []
        var previous = a.localHealthMultiplier
        while a.localHealthMultiplier > 0 && now < .seconds(60) {
            for send in pending {
                _ = a.onMessage(
                    .ack(seq: send.message.seq, from: Self.name(at: send.to), updates: []), fromAddress: send.to,
                    now: now)
                #expect(a.localHealthMultiplier == previous - 1)
                previous = a.localHealthMultiplier
            }
            now += .milliseconds(50)
            pending = a.onTick(now: now).sends.filter { $0.message.isPing }
        }
        #expect(a.localHealthMultiplier == 0)
        #expect(a.members.allSatisfy { $0.status == .alive })
    }

    @Test func missingNacks_raiseLocalHealth_receivedNacksDoNot() {
        func failedRound(nacks: Int) -> Int {
            var a = F.instance(1, knowing: [2, 3, 4, 5])
            let ping = a.onTick(now: Self.ms(50)).sends[0]
            let requests = Self.tick(&a, from: Self.ms(50), to: Self.ms(550)).sends.filter {
                $0.message.pingRequestTarget != nil
            }
            #expect(requests.count == 3)
            for r in requests.prefix(nacks) {
                _ = a.onMessage(
                    .nack(seq: ping.message.seq, from: "helper", updates: []), fromAddress: r.to, now: Self.ms(900))
            }
            _ = Self.tick(&a, from: Self.ms(550), to: Self.ms(1050))
            return a.localHealthMultiplier
        }
        #expect(failedRound(nacks: 3) == 0)
        #expect(failedRound(nacks: 1) == 2)
        #expect(failedRound(nacks: 0) == 3)
    }

    @Test func localHealthMultiplier_isCappedBelowAwarenessMax() {
        var a = F.instance(1, knowing: [2])
        for incarnation in 0..<20 {
            let claim = F.update(1, .suspect, incarnation: SWIM.Incarnation(incarnation), observer: "node-2")
            _ = a.onMessage(.ack(seq: 1, from: "node-2", updates: [claim]), fromAddress: "x", now: .zero)
        }
        #expect(a.localMember.incarnation == 20)
        #expect(a.localHealthMultiplier == SWIM.Settings().awarenessMaxMultiplier - 1)
    }

    @Test func onPingRequest_whenTargetAcks_forwardsAckWithRequesterSeq() {
        var h = F.instance(2, knowing: [1, 3])
        let out = h.onMessage(
            .pingRequest(seq: 77, from: "node-1", target: "node-3", targetAddress: "10.0.0.3:7946", updates: []),
            fromAddress: "10.0.0.1:7946", now: Self.ms(100))
        let ping = out.sends.first { $0.message.isPing }!
        #expect(ping.to == "10.0.0.3:7946")
        let relayed = h.onMessage(
            .ack(seq: ping.message.seq, from: "node-3", updates: []), fromAddress: "10.0.0.3:7946", now: Self.ms(200))
        #expect(relayed.sends.count == 1)
        #expect(relayed.sends[0].to == "10.0.0.1:7946")
        #expect(relayed.sends[0].message.isAck)
        #expect(relayed.sends[0].message.seq == 77)
        #expect(!Self.tick(&h, from: Self.ms(200), to: Self.ms(600)).sends.contains { $0.message.isNack })
    }

    @Test func onPingRequest_whenTargetIsSilent_sendsNackAfterIndirectProbeTimeout() {
        var h = F.instance(2, knowing: [1, 3])
        _ = h.onMessage(
            .pingRequest(seq: 77, from: "node-1", target: "node-3", targetAddress: "10.0.0.3:7946", updates: []),
            fromAddress: "10.0.0.1:7946", now: Self.ms(100))
        #expect(!Self.tick(&h, from: Self.ms(100), to: Self.ms(450)).sends.contains { $0.message.isNack })
        let out = Self.tick(&h, from: Self.ms(450), to: Self.ms(500))
        let nack = out.sends.first { $0.message.isNack }
        #expect(nack?.to == "10.0.0.1:7946")
        #expect(nack?.message.seq == 77)
    }

    @Test func onPeerUnreachable_afterDetectionThresholdReports_suspectsMember() {
        var settings = SWIM.Settings()
        settings.detectionThreshold = 2
        var a = F.instance(1, knowing: [2, 3], settings: settings)
        #expect(a.onPeerUnreachable("node-2", now: Self.ms(10)).isEmpty)
        #expect(a.member(named: "node-2")?.status == .alive)
        let out = a.onPeerUnreachable("node-2", now: Self.ms(20))
        #expect(out.transitions.map(\.member.status) == [.suspect])
        #expect(a.member(named: "node-2")?.status == .suspect)
        #expect(a.onPeerUnreachable("nobody", now: Self.ms(30)).isEmpty)
    }

    @Test func onPeerUnreachable_countResetsWhenMemberIsHeardFrom() {
        var settings = SWIM.Settings()
        settings.detectionThreshold = 2
        var a = F.instance(1, knowing: [2, 3], settings: settings)
        _ = a.onPeerUnreachable("node-2", now: Self.ms(10))
        _ = a.onMessage(.ping(seq: 3, from: "node-2", updates: [F.update(2)]), fromAddress: "x", now: Self.ms(15))
        _ = a.onPeerUnreachable("node-2", now: Self.ms(20))
        #expect(a.member(named: "node-2")?.status == .alive)
    }

    @Test func probeOrder_visitsEveryMemberOncePerCycle_inShuffledOrder() {
        var a = F.instance(1, knowing: Array(2...7))
        var now = Duration.zero
        var targets: [String] = []
        while targets.count < 18 {
            now += .milliseconds(50)
            for send in a.onTick(now: now).sends where send.message.isPing {
                targets.append(send.to)
                _ = a.onMessage(
                    .ack(seq: send.message.seq, from: Self.name(at: send.to), updates: []), fromAddress: send.to,
                    now: now)
            }
        }
        let cycles = [Array(targets[0..<6]), Array(targets[6..<12]), Array(targets[12..<18])]
        for cycle in cycles { #expect(Set(cycle).count == 6) }
        #expect(Set(cycles).count > 1, "each pass is reshuffled")
    }

    @Test func probeOrder_probesSilentMembersFirst() {
        var settings = SWIM.Settings()
        settings.gossipSilenceTimeout = .seconds(3)
        var a = F.instance(1, knowing: Array(2...9), settings: settings)
        // Everyone but node-9 keeps talking to us.
        var now = Duration.zero
        var silentProbedAt: Duration?
        while silentProbedAt == nil && now < .seconds(6) {
            now += .milliseconds(50)
            for j in 2...8 {
                _ = a.onMessage(.ping(seq: 1, from: "node-\(j)", updates: []), fromAddress: "x", now: now)
            }
            for send in a.onTick(now: now).sends where send.message.isPing {
                if send.to == F.member(9).gossipAddress && now >= .seconds(3) { silentProbedAt = now }
                _ = a.onMessage(
                    .ack(seq: send.message.seq, from: "node-0", updates: []), fromAddress: send.to, now: now)
            }
        }
        // node-9 counts as silent from 3 s and is pinged at the next round, ahead of the round robin.
        #expect(silentProbedAt == .milliseconds(3050))
    }

    // MARK: Suspicion

    @Test(
        arguments: [
            (3, 0, 4000), (3, 1, 4000), (3, 2, 4000),
            (5, 0, 24000), (5, 1, 11381), (5, 2, 4000),
            (30, 0, 35448), (30, 1, 16810), (30, 2, 5908),
        ] as [(Int, Int, Int64)])
    func suspicionTimeout_matchesLifeguardFormula(members: Int, confirmations: Int, expectedMillis: Int64) {
        let timeout = SWIM.Settings().suspicionTimeout(memberCount: members, confirmations: confirmations)
        #expect(timeout == .milliseconds(expectedMillis))
    }

    @Test func suspicionTimeoutBounds_andRetransmitLimit_matchMemberlist() {
        let s = SWIM.Settings()
        #expect(s.minSuspicionTimeout(memberCount: 1) == .seconds(4))
        #expect(s.minSuspicionTimeout(memberCount: 100) == .seconds(8))
        #expect(s.maxSuspicionTimeout(memberCount: 100) == .seconds(48))
        #expect(s.expectedConfirmations(memberCount: 3) == 0)
        #expect(s.expectedConfirmations(memberCount: 4) == 2)
        #expect(s.suspicionTimeout(memberCount: 5, confirmations: 7) == .seconds(4))
        #expect(s.retransmitLimit(memberCount: 1) == 4)
        #expect(s.retransmitLimit(memberCount: 9) == 4)
        #expect(s.retransmitLimit(memberCount: 10) == 8)
        #expect(s.retransmitLimit(memberCount: 100) == 12)
    }

    /// A five-member view where node-2 was just suspected by node-3 at t = 0.
    static func suspecting() -> Instance {
        var a = F.instance(1, knowing: [2, 3, 4, 5])
        _ = a.onMessage(
            .ack(seq: 1, from: "node-3", updates: [F.update(2, .suspect, observer: "node-3")]), fromAddress: "x",
            now: .zero)
        return a
    }

    static func deathTime(_ a: inout Instance, of name: String, from: Duration) -> Duration? {
        var now = from
        while now < .seconds(60) {
            now += .milliseconds(50)
            // Keep the probe rounds from adding our own confirmations.
            for send in a.onTick(now: now).sends where send.message.isPing {
                _ = a.onMessage(.ack(seq: send.message.seq, from: "node-0", updates: []), fromAddress: "", now: now)
            }
            if a.member(named: name)?.status == .dead { return now }
        }
        return nil
    }

    @Test func suspicion_withoutConfirmations_lastsMaximumTimeout() {
        var a = Self.suspecting()
        #expect(Self.deathTime(&a, of: "node-2", from: .zero) == .seconds(24))
    }

    @Test func suspicion_independentConfirmations_shortenTimeout_relaysDoNot() {
        var a = Self.suspecting()
        // The original suspicion relayed by others is not a confirmation.
        for relay in ["node-4", "node-5"] {
            _ = a.onMessage(
                .ack(seq: 2, from: relay, updates: [F.update(2, .suspect, observer: "node-3")]), fromAddress: "x",
                now: .seconds(1))
        }
        var relayed = a
        #expect(Self.deathTime(&relayed, of: "node-2", from: .seconds(1)) == .seconds(24))
        // One independent suspicion: 11.381 s from the start.
        _ = a.onMessage(
            .ack(seq: 3, from: "node-4", updates: [F.update(2, .suspect, observer: "node-4")]), fromAddress: "x",
            now: .seconds(1))
        var once = a
        #expect(Self.deathTime(&once, of: "node-2", from: .seconds(1)) == .milliseconds(11_400))
        // Two: the minimum, 4 s; a confirmation after the deadline fires at once.
        _ = a.onMessage(
            .ack(seq: 4, from: "node-5", updates: [F.update(2, .suspect, observer: "node-5")]), fromAddress: "x",
            now: .seconds(5))
        #expect(Self.deathTime(&a, of: "node-2", from: .seconds(5)) == .milliseconds(5050))
        #expect(a.member(named: "node-2")?.incarnation == 0)
    }

    @Test func suspicion_isCancelledByRefutation() {
        var a = Self.suspecting()
        _ = a.onMessage(
            .ping(seq: 5, from: "node-2", updates: [F.update(2, incarnation: 1)]), fromAddress: "x", now: .seconds(2))
        #expect(a.member(named: "node-2")?.status == .alive)
        #expect(Self.deathTime(&a, of: "node-2", from: .seconds(2)) == nil)
    }

    @Test func pingToSuspectMember_carriesTheSuspicionSoItCanRefute() {
        var a = Self.suspecting()
        // Exhaust the gossip queue so only the targeted view can carry it.
        for seq in 10..<40 {
            _ = a.onMessage(.ping(seq: UInt64(seq), from: "node-3", updates: []), fromAddress: "x", now: .zero)
        }
        #expect(a.pendingUpdateCount == 0)
        let out = a.onMessage(.ping(seq: 50, from: "node-2", updates: []), fromAddress: "x", now: .zero)
        let updates = out.sends[0].message.updates
        #expect(updates.contains { $0.name == "node-2" && $0.status == .suspect })
    }

    // MARK: Join, leave, health

    @Test func join_pingsOnlyUnknownSeeds_andRetriesWhileAlone() {
        var a = F.instance(1, knowing: [2])
        let out = a.join(seeds: ["10.0.0.1:7946", "10.0.0.2:7946", "10.0.0.3:7946"], now: .zero)
        #expect(out.sends.map(\.to) == ["10.0.0.3:7946"])
        #expect(out.sends.allSatisfy { $0.message.isPing })

        var lonely = F.instance(1)
        _ = lonely.join(seeds: ["10.0.0.3:7946"], now: .zero)
        let retries = Self.tick(&lonely, from: .zero, to: .seconds(3)).sends
        #expect(retries.count == 3)
        #expect(retries.allSatisfy { $0.to == "10.0.0.3:7946" })
    }

    @Test func onPing_fromUnknownSender_addsIt_andAnswersWithMembershipSample() {
        var seed = F.instance(1, knowing: [2, 3, 4])
        for seq in 10..<40 {
            _ = seed.onMessage(.ping(seq: UInt64(seq), from: "node-2", updates: []), fromAddress: "x", now: .zero)
        }
        #expect(seed.pendingUpdateCount == 0)
        let out = seed.onMessage(
            .ping(seq: 1, from: "node-5", updates: [F.update(5)]), fromAddress: "10.0.0.5:7946", now: .zero)
        #expect(seed.member(named: "node-5")?.status == .alive)
        let ack = out.sends.first { $0.message.isAck }!
        #expect(ack.to == "10.0.0.5:7946")
        #expect(Set(ack.message.updates.map(\.name)) == ["node-1", "node-2", "node-3", "node-4", "node-5"])
        // A known member gets no sample.
        let again = seed.onMessage(.ping(seq: 2, from: "node-5", updates: [F.update(5)]), fromAddress: "x", now: .zero)
        #expect(Set(again.sends[0].message.updates.map(\.name)).isSubset(of: ["node-1", "node-5"]))
    }

    @Test func leave_gossipsLeftWithHigherIncarnationToEveryActiveMember() {
        var a = F.instance(1, knowing: [2, 3, 4])
        _ = a.onMessage(
            .ack(seq: 1, from: "node-2", updates: [F.update(4, .dead, observer: "node-2")]), fromAddress: "x",
            now: .zero)
        let out = a.leave(now: .seconds(1))
        #expect(out.transitions.map(\.member.status) == [.left])
        #expect(out.transitions.first?.previous == .alive)
        #expect(Set(out.sends.map(\.to)) == ["10.0.0.2:7946", "10.0.0.3:7946"])
        for send in out.sends {
            #expect(send.message.updates.first == F.update(1, .left, incarnation: 1))
        }
        #expect(a.leave(now: .seconds(2)).isEmpty)
    }

    @Test func health_travelsWithOwnState_andIsRefreshedWithoutNewIncarnation() {
        var a = F.instance(1)
        var b = F.instance(2)
        a.setLocalHealth([1, 2, 3])
        let join = a.join(seeds: ["10.0.0.2:7946"], now: .zero)
        _ = b.onMessage(join.sends[0].message, fromAddress: "10.0.0.1:7946", now: .zero)
        #expect(b.member(named: "node-1")?.health == [1, 2, 3])
        a.setLocalHealth([9])
        let ping = SWIM.Message.ping(seq: 2, from: "node-1", updates: [SWIM.Update(a.localMember, observer: "node-1")])
        _ = b.onMessage(ping, fromAddress: "10.0.0.1:7946", now: .seconds(1))
        #expect(b.member(named: "node-1")?.health == [9])
        #expect(b.member(named: "node-1")?.incarnation == 0)
        // A third party's copy at the same incarnation does not overwrite it.
        var stale = F.update(1)
        stale.health = [7]
        _ = b.onMessage(
            .ping(seq: 3, from: "node-3", updates: [F.update(3), stale]), fromAddress: "x", now: .seconds(2))
        #expect(b.member(named: "node-1")?.health == [9])
    }

    // MARK: Piggybacking

    /// An instance holding `count` fresh updates about members with long names and full health.
    static func crowded(count: Int, settings: SWIM.Settings = SWIM.Settings()) -> Instance {
        var a = F.instance(1, settings: settings)
        a.setLocalHealth(Array(repeating: 0xAB, count: SWIM.maxHealthBytes))
        let updates = (0..<count).map { i in
            SWIM.Update(
                name: "bifrost-gateway-eu-west-\(i)", gossipAddress: "10.1.\(i / 256).\(i % 256):7946",
                apiAddress: "10.1.\(i / 256).\(i % 256):8080", status: .alive, incarnation: UInt64(i),
                observer: "bifrost-gateway-eu-west-\(i)", health: Array(repeating: UInt8(i % 256), count: 64))
        }
        _ = a.onMessage(
            .ping(seq: 1, from: "bifrost-gateway-eu-west-0", updates: updates), fromAddress: "x", now: .zero)
        return a
    }

    @Test func piggyback_with200PendingUpdates_neverExceedsMaxPacketSize() {
        var a = Self.crowded(count: 200)
        #expect(a.pendingUpdateCount == 200)
        var sizes: [Int] = []
        var now = Duration.zero
        for round in 0..<40 {
            now += .milliseconds(50)
            let sender = "bifrost-gateway-eu-west-\(round)"
            var out = a.onMessage(.ping(seq: UInt64(round), from: sender, updates: []), fromAddress: "x", now: now)
            out += a.onMessage(
                .pingRequest(seq: 1, from: sender, target: "t", targetAddress: "t", updates: []), fromAddress: "x",
                now: now)
            out += a.onTick(now: now)
            for send in out.sends {
                let bytes = SWIMCodec.encode(send.message)
                sizes.append(bytes.count)
                #expect(bytes.count <= 1400)
            }
        }
        #expect(sizes.count > 80)
        #expect(a.pendingUpdateCount > 0)
        // While updates are pending, every message is filled to within one update of the limit.
        let largest = a.members.map { SWIMCodec.encodedSize(of: SWIM.Update($0, observer: $0.name)) }.max()!
        #expect(sizes.allSatisfy { $0 > 1400 - largest })
    }

    @Test(arguments: [200, 576, 1400, 9000])
    func piggyback_respectsAnyMaxPacketSize(limit: Int) {
        var settings = SWIM.Settings()
        settings.maxPacketSize = limit
        var a = Self.crowded(count: 200, settings: settings)
        let out = a.onMessage(.ping(seq: 1, from: "new-node", updates: [F.update(9)]), fromAddress: "x", now: .zero)
        let bytes = SWIMCodec.encode(out.sends[0].message)
        #expect(bytes.count <= limit)
        #expect(out.sends[0].message.updates.count >= 1)
    }

    @Test func piggyback_sendsEachUpdateAtMostRetransmitLimitTimes_newestFirst() {
        var a = F.instance(1)
        let news = [F.update(2), F.update(3), F.update(4), F.update(5)]
        var counts: [String: Int] = [:]
        for seq in 0..<30 {
            let out = a.onMessage(
                .ping(seq: UInt64(seq), from: "node-2", updates: seq == 0 ? news : []), fromAddress: "x", now: .zero)
            let gossip = out.sends[0].message.updates.dropFirst()
            if seq == 0 { #expect(gossip.first?.name == "node-5", "the newest update goes first") }
            for u in gossip { counts[u.name, default: 0] += 1 }
        }
        let limit = a.settings.retransmitLimit(memberCount: a.activeMemberCount)
        #expect(limit == 4)
        #expect(counts == ["node-2": limit, "node-3": limit, "node-4": limit, "node-5": limit])
        #expect(a.pendingUpdateCount == 0)
    }
}
