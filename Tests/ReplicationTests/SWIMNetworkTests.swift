import EventLog
import Testing

@testable import Replication

/// Whole-protocol behaviour: several instances exchanging encoded datagrams in virtual time.
@Suite struct SWIMNetworkTests {
    static let settings = SWIM.Settings()

    /// A converged network.
    static func converged(size: Int = 5, seed: UInt64 = 7, latency: Duration = .zero) -> SWIMNetwork {
        var net = SWIMNetwork(size: size, seed: seed, settings: settings, latency: latency)
        let ok = net.run(upTo: .seconds(30)) { $0.allRunningSeeEachOtherAlive() }
        #expect(ok, "network did not converge")
        return net
    }

    @Test(arguments: [3, 4, 5], [Duration.zero, .milliseconds(50)])
    func join_allMembersConvergeToAllAlive(size: Int, latency: Duration) {
        var net = SWIMNetwork(size: size, seed: 11, settings: Self.settings, latency: latency)
        let converged = net.run(upTo: .seconds(30)) { $0.allRunningSeeEachOtherAlive() }
        #expect(converged)
        let took = net.now
        #expect(took <= .seconds(5))
        let statuses = Set(net.transitions.map(\.status))
        #expect(statuses == [.alive], "a healthy join must not suspect anyone")
        for observer in net.names {
            // Every node recorded every member's first sighting, itself included.
            let sighted = Set(net.transitions.filter { $0.observer == observer }.map(\.member))
            #expect(sighted == Set(net.names))
        }
    }

    @Test(arguments: [3, 5], [Duration.zero, .milliseconds(50)])
    func stoppedNode_isSuspectedThenDeclaredDeadByAllWithinBound(size: Int, latency: Duration) {
        var net = Self.converged(size: size, latency: latency)
        let victim = SWIMNetwork.name(size)
        net.stopped.insert(victim)
        let stoppedAt = net.now
        let bound =
            Self.settings.probeInterval * Self.settings.detectionThreshold
            + Self.settings.maxSuspicionTimeout(memberCount: size) + SWIMNetwork.tick
        let observers = net.names.filter { $0 != victim }
        let allDead = net.run(upTo: bound) { net in
            observers.allSatisfy { net.view(of: victim, by: $0)?.status == .dead }
        }
        #expect(allDead, "not every node declared \(victim) dead within \(bound)")
        let seen = net.transitions(of: victim).filter { $0.at > stoppedAt }
        let firstSuspect = seen.first { $0.status == .suspect }
        let firstDead = seen.first { $0.status == .dead }
        #expect(firstSuspect != nil)
        if let firstSuspect, let firstDead { #expect(firstSuspect.at < firstDead.at) }
        for observer in observers {
            let mine = seen.filter { $0.observer == observer }.map(\.status)
            #expect(mine.last == .dead)
            #expect(mine.allSatisfy { $0 == .suspect || $0 == .dead }, "\(observer) saw \(mine)")
        }
        // Helpers answered with nacks, so no survivor blamed itself.
        let health = observers.map { net.nodes[$0]!.localHealthMultiplier }
        #expect(health.allSatisfy { $0 == 0 })
    }

    @Test func suspectedNodeThatIsAlive_refutesAndStaysAlive() {
        var net = Self.converged(size: 5)
        let victim = SWIMNetwork.name(3)
        let pausedAt = net.now
        net.stopped.insert(victim)
        let suspected = net.run(upTo: .seconds(3)) { net in
            net.transitions(of: victim).contains { $0.at > pausedAt && $0.status == .suspect }
        }
        #expect(suspected)
        net.stopped.remove(victim)
        let healed = net.run(upTo: .seconds(30)) { $0.allRunningSeeEachOtherAlive() }
        #expect(healed)
        net.run(for: .seconds(10))
        let stillAlive = net.allRunningSeeEachOtherAlive()
        #expect(stillAlive)
        let incarnation = net.nodes[victim]!.localMember.incarnation
        #expect(incarnation >= 1, "the suspected node refuted with a new incarnation")
        let deaths = net.transitions.filter { $0.status == .dead }
        #expect(deaths.isEmpty, "nobody may be declared dead")
        let views = net.names.map { net.view(of: victim, by: $0)?.incarnation }
        #expect(views.allSatisfy { $0 == incarnation })
    }

    @Test func leave_othersSeeLeftNotDead() {
        var net = Self.converged(size: 5)
        let leaver = SWIMNetwork.name(4)
        let out = net.nodes[leaver]!.leave(now: net.now)
        #expect(out.sends.count == 4)
        net.deliver(out, from: leaver)
        let others = net.names.filter { $0 != leaver }
        #expect(others.allSatisfy { net.view(of: leaver, by: $0)?.status == .left })
        net.run(for: .seconds(30))
        for observer in others {
            let view = net.view(of: leaver, by: observer)
            #expect(view?.status == .left)
            #expect(view?.incarnation == 1)
        }
        let seen = Set(net.transitions(of: leaver).map(\.status))
        #expect(seen == [.alive, .left])
        let own = net.transitions(of: leaver, by: leaver).last?.status
        #expect(own == .left)
    }

    @Test(arguments: [SWIM.Incarnation(1), 0])
    func restartAfterDead_isReadmittedAlive(restartIncarnation: SWIM.Incarnation) {
        var net = Self.converged(size: 4)
        let victim = SWIMNetwork.name(4)
        net.stopped.insert(victim)
        let others = net.names.filter { $0 != victim }
        let dead = net.run(upTo: .seconds(60)) { net in
            others.allSatisfy { net.view(of: victim, by: $0)?.status == .dead }
        }
        #expect(dead)
        // A restart that remembers its incarnation announces a higher one; one that does not
        // hears its own death in the seed's answer and refutes it.
        net.start(4, incarnation: restartIncarnation)
        let back = net.run(upTo: .seconds(20)) { $0.allRunningSeeEachOtherAlive() }
        #expect(back)
        let incarnation = net.nodes[victim]!.localMember.incarnation
        #expect(incarnation >= 1)
        for observer in others {
            let view = net.view(of: victim, by: observer)
            #expect(view?.incarnation == incarnation)
            let last = net.transitions(of: victim, by: observer).last?.status
            #expect(last == .alive)
        }
    }

    @Test func partitionWhoseSidesDeclaredEachOtherDead_healsThroughReconnect() {
        var net = Self.converged(size: 5)
        let minority = [SWIMNetwork.name(4), SWIMNetwork.name(5)]
        let majority = net.names.filter { !minority.contains($0) }
        for name in minority { net.sides[name] = 1 }
        let split = net.run(upTo: .seconds(60)) { net in
            majority.allSatisfy { a in
                minority.allSatisfy { b in
                    net.view(of: b, by: a)?.status == .dead && net.view(of: a, by: b)?.status == .dead
                }
            }
        }
        #expect(split)
        net.sides = [:]
        let healed = net.run(upTo: Self.settings.reconnectInterval! * 2) { $0.allRunningSeeEachOtherAlive() }
        #expect(healed)
    }

    @Test func deafNode_raisesLocalHealthMultiplier_andRecoversAfterHealing() {
        var net = Self.converged(size: 5)
        let deaf = SWIMNetwork.name(1)
        net.deaf.insert(deaf)
        let raised = net.run(upTo: .seconds(3)) { $0.nodes[deaf]!.localHealthMultiplier > 0 }
        #expect(raised)
        net.deaf.remove(deaf)
        let recovered = net.run(upTo: .seconds(120)) { net in
            net.nodes[deaf]!.localHealthMultiplier == 0 && net.allRunningSeeEachOtherAlive()
        }
        #expect(recovered)
        let deaths = net.transitions.filter { $0.status == .dead }
        #expect(deaths.isEmpty)
    }

    @Test func sameSeed_producesIdenticalDirectiveSequences() {
        func scenario(seed: UInt64) -> [SWIMNetwork.TraceEntry] {
            var net = SWIMNetwork(size: 5, seed: seed, settings: Self.settings)
            net.run(for: .seconds(5))
            net.stopped.insert(SWIMNetwork.name(2))
            net.run(for: .seconds(10))
            net.deliver(net.nodes[SWIMNetwork.name(3)]!.leave(now: net.now), from: SWIMNetwork.name(3))
            net.run(for: .seconds(20))
            return net.trace
        }
        let first = scenario(seed: 99)
        let second = scenario(seed: 99)
        #expect(first.count > 100)
        #expect(first == second)
        #expect(scenario(seed: 100) != first)
    }

    @Test func twelveNodesWithFullHealthPayloads_keepEveryDatagramWithinMaxPacketSize() {
        var settings = SWIM.Settings()
        settings.maxPacketSize = 512
        var net = SWIMNetwork(size: 12, seed: 5, settings: settings)
        for i in 1...12 { net.nodes[SWIMNetwork.name(i)]!.setLocalHealth(Array(repeating: UInt8(i), count: 64)) }
        let converged = net.run(upTo: .seconds(60)) { $0.allRunningSeeEachOtherAlive() }
        #expect(converged)
        let largest = net.largestDatagram
        #expect(largest <= 512)
        #expect(largest > 400, "packets should be filled")
    }
}
