import EventLog
import Foundation
import Gateway
import Logging
import Replication
import ServiceLifecycle

/// Turns membership transitions into the audit trail (`membership.changed` events) and keeps
/// the sync service connected to the live members.
struct MembershipService: Service {
    let node: Node
    let gossip: GossipService
    let sync: SyncService

    func run() async throws {
        let changes = gossip.statusChanges()
        await withGracefulShutdownHandler {
            for await change in changes.cancelOnGracefulShutdown() {
                let member = change.member
                node.logger.info(
                    "member \(member.status)",
                    metadata: [
                        "peer.id": .string(member.name), "peer.incarnation": .stringConvertible(member.incarnation),
                    ])
                do {
                    _ = try await node.store.append(
                        .membershipChanged(
                            MembershipChanged(
                                node: member.name, state: member.status.memberState, incarnation: member.incarnation,
                                observer: node.config.cluster.nodeID, address: member.apiAddress)))
                } catch {
                    node.logger.error("cannot record membership change: \(error)")
                }
                sync.updatePeers(livePeers())
            }
        } onGracefulShutdown: {
        }
    }

    func livePeers() -> [SyncPeer] {
        gossip.members().compactMap { m in
            guard m.member.name != node.config.cluster.nodeID, m.member.status.isActive,
                let address = HostPort(m.member.gossipAddress)
            else { return nil }
            return SyncPeer(name: m.member.name, host: address.host, port: address.port)
        }
    }
}

/// Samples this node's vital signs for gossip and `/cluster/nodes`, and flips `/health` to 503
/// as soon as a shutdown starts (it is the first service told to stop).
struct HealthService: Service {
    let node: Node

    func run() async throws {
        var sampler = NodeHealth.Sampler()
        await withGracefulShutdownHandler {
            while !Task.isCancelled && !Task.isShuttingDownGracefully {
                let scheduled = ContinuousClock.now + .seconds(1)
                try? await Task.sleep(until: scheduled, tolerance: .milliseconds(50), clock: .continuous)
                let lag = ContinuousClock.now - scheduled
                let (cpu, rss) = sampler.sample()
                var health = NodeHealth()
                health.cpuPercent = cpu
                health.residentMemoryBytes = rss
                health.eventLoopLagMillis =
                    Double(lag.components.attoseconds) / 1e15 + Double(lag.components.seconds) * 1000
                health.inFlightRequests = UInt32(clamping: node.engine.metrics.activeRequests)
                health.logEvents = (try? node.store.reader.eventCount()) ?? 0
                health.logBytes = UInt64(node.store.reader.usedBytes())
                node.metrics.health.withLock { $0 = health }
                node.gossip?.setLocalHealth(health.bytes)
            }
        } onGracefulShutdown: {
            node.state.withLock { $0 = .draining }
            node.engine.setDraining()
        }
        // Still serving while balancers notice the 503; then the HTTP server stops accepting.
        if Task.isShuttingDownGracefully {
            node.logger.info(
                "draining",
                metadata: ["drain.delay": "\(ConfigDuration.format(node.config.cluster.failover.drainDelay))"])
            try? await Task.sleep(for: node.config.cluster.failover.drainDelay)
        }
    }
}
