import ArgumentParser
import EventLog
import Foundation
import Gateway
import Hummingbird
import Logging
import Prometheus
import Replication
import ServiceLifecycle
import Synchronization

/// One Bifrost node: the event log, membership and sync when clustered, and the HTTP API, run
/// as services in that order so a graceful shutdown stops the HTTP side first and closes the
/// log last.
final class Node: Sendable {
    let config: BifrostConfig
    let logger: Logger
    let dataDir: String
    let store: EventStore
    let faults = FaultInjector()
    let gossip: GossipService?
    let sync: SyncService?
    let faultInjection: Bool
    let state = Mutex(ServingState.starting)
    let startedAt = ContinuousClock.now
    let metrics: NodeMetrics
    let upstream: UpstreamClient
    let engine: GatewayEngine
    let replayMarks: ReplayMarksKeeper?

    init(config: BifrostConfig, fileDocument: [UInt8]?, logger: Logger, faultInjection: Bool) throws {
        self.config = config
        self.logger = logger
        self.faultInjection = faultInjection
        let nodeID = config.cluster.nodeID
        dataDir = config.dataDir ?? "bifrost-data/\(nodeID)"
        var settings = EventStore.Settings()
        // Only configuration documents signed by a trusted operator key are folded.
        settings.views.trustedConfigKeys = Set(
            config.admin.trustedKeys.compactMap { Data(base64Encoded: $0).map { Array($0) } })
        settings.views.performanceWindowMillis = max(
            1, UInt64(config.cluster.loadBalancing.performanceWindow / .milliseconds(1)))
        settings.maxLogBytes = config.retention.maxLogBytes
        // Views keep the windows of one horizon, and at least the 10 minutes the cluster metrics read.
        settings.views.retainMillis = UInt64(max(config.retention.horizon, .seconds(600)) / .milliseconds(1))
        do {
            store = try EventStore.open(directory: dataDir, nodeName: nodeID, settings: settings)
        } catch let error as EventLogError {
            FileHandle.standardError.write(Data("bifrost: cannot open the data directory: \(error)\n".utf8))
            throw ExitCode(2)
        }
        metrics = NodeMetrics()
        // A bad cluster key or TLS file ends init with its configuration error.
        let keyring = try config.cluster.enabled ? Self.keyring(config, logger: logger) : nil
        let tls = try config.cluster.enabled ? Self.clusterTLS(config, logger: logger) : nil
        upstream = try UpstreamClient()
        guard config.cluster.enabled else {
            gossip = nil
            sync = nil
            replayMarks = nil
            engine = try Self.engine(
                config, fileDocument, store, SingleNodeCluster(), upstream, metrics: metrics, logger: logger)
            return
        }
        let cluster = config.cluster
        let advertiseHost = Self.advertiseHost(cluster.bindAddress.host)
        let gossipAddress = HostPort(host: advertiseHost, port: cluster.gossip.port)
        let apiAddress = HostPort(host: advertiseHost, port: cluster.bindAddress.port)
        // Peers are API addresses (the seed's shape); every node runs gossip at the same offset
        // from its API port, which holds for one-host clusters (8080→7946, 8081→7947) and for
        // containers that all use 8080 and 7946.
        let offset = cluster.gossip.port - cluster.bindAddress.port
        let seeds = cluster.peers.map { HostPort(host: $0.host, port: $0.port + offset).description }
        var swim = SWIM.Settings()
        swim.probeInterval = cluster.gossip.interval
        swim.probeTimeout = min(cluster.gossip.interval / 2, cluster.gossip.timeout)
        swim.indirectProbeTimeout = min(cluster.gossip.interval * 0.4, cluster.gossip.timeout)
        swim.detectionThreshold = cluster.failover.detectionThreshold
        swim.maxPacketSize = cluster.gossip.maxPacketSize
        swim.gossipSilenceTimeout = cluster.gossip.timeout
        gossip = GossipService(
            local: SWIM.Member(
                name: nodeID, gossipAddress: gossipAddress.description, apiAddress: apiAddress.description,
                status: .alive,
                // Seconds since the epoch: a restarted node always outranks what peers last heard
                // of it (possibly `dead`), so it rejoins without waiting for a refutation.
                incarnation: SystemWallClock().nowMillis() / 1000),
            settings: swim, host: cluster.bindAddress.host, port: cluster.gossip.port, keyring: keyring, faults: faults,
            seeds: seeds, compression: cluster.gossip.compression, logger: logger)
        let marks = ReplayMarksFile(directory: dataDir)
        do {
            gossip!.restoreReplayMarks(try marks.load())
        } catch {
            logger.warning(
                "cannot read the gossip replay marks; datagrams from before the restart may be accepted once",
                metadata: ["file.path": .string(marks.path), "error": .string("\(error)")])
        }
        replayMarks = ReplayMarksKeeper(gossip: gossip!, file: marks, logger: logger)
        let sync = SyncService(
            store: store, localNode: nodeID, host: cluster.bindAddress.host, port: cluster.gossip.port,
            keyring: keyring, tls: tls, faults: faults, logger: logger)
        self.sync = sync
        engine = try Self.engine(
            config, fileDocument, store, NodeCluster(gossip: gossip!, sync: sync, localName: nodeID), upstream,
            metrics: metrics, logger: logger)
    }

    /// The gateway; when its configuration is refused, the upstream pool is closed before the
    /// error ends the start.
    static func engine(
        _ config: BifrostConfig, _ fileDocument: [UInt8]?, _ store: EventStore, _ cluster: some GatewayCluster,
        _ upstream: UpstreamClient, metrics: NodeMetrics, logger: Logger
    ) throws -> GatewayEngine {
        let hopKeys =
            config.cluster.encryption.enabled ? config.cluster.encryption.keys.compactMap { $0.resolve() } : []
        return try GatewayEngine(
            config: config, fileDocument: fileDocument, store: store, cluster: cluster, upstream: upstream,
            metrics: GatewayMetrics(registry: metrics.registry), logger: logger,
            hop: HopAuthenticator(base64ClusterKeys: hopKeys), sealer: SecretSealer(base64ClusterKeys: hopKeys))
    }

    /// Loads `cluster.tls` (nil when absent); a file that cannot be used refuses the start.
    static func clusterTLS(_ config: BifrostConfig, logger: Logger) throws -> ClusterTLS? {
        guard let files = config.cluster.tls else { return nil }
        let tls: ClusterTLS
        do {
            tls = try ClusterTLS(certificatePath: files.certificate, keyPath: files.key, caPath: files.ca)
        } catch {
            throw ConfigError(path: error.configPath, error.message)
        }
        logger.info(
            "sync streams use mutual TLS (under the keyring seal)",
            metadata: [
                "tls.cert": "\(files.certificate)", "tls.ca": "\(files.ca)",
                "tls.ca_certificates": "\(tls.caCertificateCount)",
            ])
        return tls
    }

    static func keyring(_ config: BifrostConfig, logger: Logger) throws -> Keyring? {
        guard config.cluster.encryption.enabled else {
            logger.warning(
                "cluster traffic is NOT encrypted or authenticated (cluster.encryption.enabled is false); any host that reaches the gossip port can join"
            )
            return nil
        }
        var keys: [String] = []
        for (i, secret) in config.cluster.encryption.keys.enumerated() {
            guard let value = secret.resolve() else {
                throw ConfigError(path: "cluster.encryption.keys[\(i)]", "\(secret) is not set in the environment")
            }
            keys.append(value)
        }
        guard !keys.isEmpty else {
            throw ConfigError(
                path: "cluster.encryption.keys",
                "a clustered node needs a cluster key: set BIFROST_CLUSTER_KEY (create one with `bifrost keygen`) or cluster.encryption.keys, or set cluster.encryption.enabled to false"
            )
        }
        do {
            return try Keyring(base64Keys: keys)
        } catch {
            throw ConfigError(path: "cluster.encryption.keys", error.description)
        }
    }

    static func advertiseHost(_ bindHost: String) -> String {
        if let host = ProcessInfo.processInfo.environment["ADVERTISE_HOST"], !host.isEmpty { return host }
        if bindHost != "0.0.0.0" && bindHost != "::" { return bindHost }
        let name = ProcessInfo.processInfo.hostName
        return name.isEmpty ? "127.0.0.1" : name
    }

    func run() async throws {
        let router = Router()
        ClusterRoutes.register(on: router, status: self)
        DashboardRoutes.register(on: router)
        GatewayRoutes.register(on: router, engine: engine)
        AdminRoutes.register(on: router, engine: engine)
        if faultInjection { registerFaultInjection(on: router) }
        let bind = config.cluster.bindAddress
        let front = HTTPFront(
            host: bind.host, port: bind.port, settings: config.gateway.http,
            maxBodyBytes: { [engine] in engine.runtime.config.gateway.maxRequestBytes },
            responder: FrontRouter(router: router, engine: engine, logger: logger), metrics: engine.metrics,
            logger: logger,
            onServing: { [self] _ in
                state.withLock { $0 = .serving }
                logger.info(
                    "serving",
                    metadata: [
                        "http.address": .string(bind.description), "data.dir": .string(dataDir),
                        "cluster": .string(config.cluster.enabled ? "enabled" : "single node"),
                    ])
            })
        var services: [any Service] = [
            StoreService(store: store, node: self),
            RetentionService(store: store, retention: config.retention, metrics: metrics, logger: logger),
        ]
        if let gossip, let sync {
            services += [gossip, sync, MembershipService(node: self, gossip: gossip, sync: sync)]
            if let replayMarks { services.append(replayMarks) }
        }
        // Stopped after the HTTP server (reverse order): the last requests' events are written
        // before the log closes.
        services += [engine, upstream]
        services.append(front)
        // Last in the list, so the first told to stop: /health turns 503 before anything closes.
        services.append(HealthService(node: self))
        var configuration = ServiceGroupConfiguration(
            services: services.map { .init(service: $0) }, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        configuration.maximumGracefulShutdownDuration =
            config.cluster.failover.drainDelay + config.cluster.failover.drainTimeout
        let group = ServiceGroup(configuration: configuration)
        try await group.run()
    }

    private func registerFaultInjection(on router: Router<BasicRequestContext>) {
        logger.warning("fault injection endpoints are enabled (/debug/partition); never do this in production")
        router.post("debug/partition") { [faults] request, _ -> Response in
            let body = try await request.body.collect(upTo: 64 << 10)
            let names = String(buffer: body).split(separator: ",").map {
                $0.trimmingCharacters(in: .whitespacesAndNewlines)
            }
            .filter { !$0.isEmpty }
            faults.block(Set(names))
            return ClusterRoutes.json(.object(["blocked": .array(faults.blocked.sorted().map(JSONValue.string))]))
        }
        // Breaks (POST) or restores (DELETE) this node's path to its providers.
        router.post("debug/upstream") { [upstream] _, _ -> Response in
            upstream.setProvidersBlackholed(true)
            return ClusterRoutes.json(.object(["providers_blackholed": .bool(true)]))
        }
        router.delete("debug/upstream") { [upstream] _, _ -> Response in
            upstream.setProvidersBlackholed(false)
            return ClusterRoutes.json(.object(["providers_blackholed": .bool(false)]))
        }
        router.delete("debug/partition") { [faults] _, _ -> Response in
            faults.unblockAll()
            return ClusterRoutes.json(.object(["blocked": .array([])]))
        }
        // Appends synthetic counter events, so tests can drive replication before the gateway does.
        router.post("debug/events") { [store] request, _ -> Response in
            let count = min(100_000, max(1, request.uri.queryParameters.get("count", as: Int.self) ?? 1))
            let now = SystemWallClock().nowMillis()
            let window = now / 60_000 * 60_000
            var ids: [EventID] = []
            for start in stride(from: 0, to: count, by: 1000) {
                ids += try await store.append(
                    contentsOf: (start..<min(count, start + 1000)).map { i in
                        .rateLimitIncrement(
                            RateLimitIncrement(
                                keys: ["vk:debug-\(i % 4)"], windowStartMillis: window, windowMillis: 60_000))
                    })
            }
            return ClusterRoutes.json(.object(["appended": .uint(UInt64(ids.count))]))
        }
    }
}

/// Closes the event log when everything above it has stopped.
struct StoreService: Service {
    let store: EventStore
    let node: Node

    func run() async throws {
        try? await gracefulShutdown()
        node.state.withLock { $0 = .draining }
        try await store.close()
        node.logger.info("event log closed")
    }
}

/// Compacts what passed `retention.horizon`, every `retention.interval`, in bounded steps
/// (`EventStore.compactStep`), so the log stops growing at steady traffic and the writer is
/// never held long. Every node compacts the same chunks to the same aggregates.
struct RetentionService: Service {
    let store: EventStore
    let retention: BifrostConfig.Retention
    let metrics: NodeMetrics
    let logger: Logger
    var wallClock: any WallClock = SystemWallClock()

    func run() async throws {
        let removed = metrics.registry.makeCounter(
            descriptor: MetricNameDescriptor(
                metricName: "bifrost_eventlog_compacted_events_total", unitName: "",
                helpText: "Counter and usage events folded into aggregates past retention.horizon"))
        let written = metrics.registry.makeCounter(
            descriptor: MetricNameDescriptor(
                metricName: "bifrost_eventlog_aggregates_written_total", unitName: "",
                helpText: "Aggregate events written by compaction"))
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                let report = try await store.compactExpired(
                    age: retention.horizon, nowMillis: wallClock.nowMillis(),
                    shouldStop: { Task.isShuttingDownGracefully || Task.isCancelled })
                removed.increment(by: Int64(report.eventsRemoved))
                written.increment(by: Int64(report.aggregatesWritten))
            } catch {
                logger.warning("compaction failed; retrying at the next interval", metadata: ["error": "\(error)"])
            }
            // Woken by a graceful shutdown, so the node does not wait out the interval to stop.
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: retention.interval) }
        }
    }
}

/// The gateway's view of the cluster: live members from gossip, acknowledgements from sync.
struct NodeCluster: GatewayCluster {
    let gossip: GossipService
    let sync: SyncService
    let localName: String

    var liveNodeCount: Int { gossip.liveMemberCount }

    var knownNodeCount: Int { gossip.knownMemberCount }

    func acknowledgementChanges() -> AsyncStream<Void> { sync.acknowledgementChanges() }

    func migrationTargets() -> [(name: String, apiAddress: String)] {
        gossip.members()
            .filter { $0.member.name != localName && $0.member.status == .alive && !$0.member.apiAddress.isEmpty }
            .sorted { ($0.lastSeenMillisAgo, $0.member.name) < ($1.lastSeenMillisAgo, $1.member.name) }
            .map { ($0.member.name, $0.member.apiAddress) }
    }

    func reportUnreachable(_ name: String) { gossip.reportUnreachable(name) }

    func membership(localName: String) -> ClusterMembership {
        let members = gossip.members().map(\.member)
        let live = members.filter { $0.status.isActive }.map(\.name)
        return ClusterMembership(
            live: (live.contains(localName) ? live : live + [localName]).sorted(),
            known: max(1, members.filter { $0.status != .left }.count),
            failed: members.filter { $0.status == .dead || $0.status == .suspect }.count,
            convergenceMillis: sync.metrics().propagationP99Millis,
            failedNames: members.filter { $0.status == .dead || $0.status == .suspect }.map(\.name).sorted())
    }

    func ownEventsAcknowledgedThrough() -> HLCTimestamp? {
        sync.acknowledged(of: NodeID(name: localName), byEach: gossip.activePeerNames)
    }
}
