import EventLog
import Foundation
import Logging
import Synchronization
import Testing

@testable import Replication

/// The sync service over real sockets on 127.0.0.1, with real stores in temporary directories.
@Suite struct SyncServiceTests {
    static let deadline: Duration = .seconds(15)

    @Test func threeNodes_replicateEventsAppendedOnEach() async throws {
        try await SyncTestNode.withCleanup { cluster in
            try await threeNodes(cluster)
        }
    }

    func threeNodes(_ cluster: SyncTestNodes) async throws {
        let keyring = try SyncTestNode.keyring()
        let nodes = try await SyncTestNode.cluster(["a", "b", "c"], keyring: keyring, in: cluster)
        try await SyncTestNode.waitConnected(nodes)

        try await withThrowingTaskGroup(of: Void.self) { group in
            for node in nodes {
                group.addTask {
                    for _ in 0..<30 { _ = try await node.store.append(contentsOf: SyncTestNode.payloads(10)) }
                }
            }
            try await group.waitForAll()
        }

        try await SyncTestNode.waitConverged(nodes, events: 900)
        for node in nodes {
            let metrics = node.service.metrics()
            #expect(metrics.connections == nodes.map(\.name).filter { $0 != node.name })
            #expect(metrics.rejectedFramesTotal == 0)
            #expect(metrics.protocolErrors == 0)
            #expect(metrics.eventsSent >= 300)
            #expect(metrics.propagationSamples > 0)
            #expect(metrics.propagationP50Millis != nil && metrics.propagationP99Millis != nil)
            #expect(node.service.transportStats.snapshot().opened > 0)
        }
    }

    @Test func lateNode_catchesUpByWatermark_unencrypted() async throws {
        try await SyncTestNode.withCleanup { cluster in
            try await lateNode(cluster)
        }
    }

    func lateNode(_ cluster: SyncTestNodes) async throws {
        var nodes = try await SyncTestNode.cluster(["a", "b"], keyring: nil, in: cluster)
        try await SyncTestNode.waitConnected(nodes)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for node in nodes {
                group.addTask {
                    for _ in 0..<10 { _ = try await node.store.append(contentsOf: SyncTestNode.payloads(1_000)) }
                }
            }
            try await group.waitForAll()
        }
        try await SyncTestNode.waitConverged(nodes, events: 20_000)

        let startedAt = ContinuousClock.now
        let late = try await SyncTestNode(name: "c", keyring: nil, in: cluster)
        nodes.append(late)
        SyncTestNode.connect(nodes)
        try await SyncTestNode.waitConverged(nodes, events: 20_000)
        let caughtUp = ContinuousClock.now - startedAt
        #expect(caughtUp < .seconds(10), "catch-up of 20,000 events took \(caughtUp)")
        // Connection counters reach the service's metrics on the next tick.
        let counted = try await SyncTestNode.eventually { late.service.metrics().eventsReceived >= 20_000 }
        #expect(counted, "received \(late.service.metrics().eventsReceived)")
        #expect(late.service.metrics().propagationSamples == 0, "catch-up is not streaming")

        // What "c" acknowledged reaches its peers: the basis of "wait until replicated".
        let expected = try late.store.reader.originWatermarks()
        let acknowledged = try await SyncTestNode.eventually {
            nodes[0].service.peerWatermarks()["c"] == expected && nodes[1].service.peerWatermarks()["c"] == expected
        }
        #expect(acknowledged)
    }

    @Test func partition_healsAndReconciliationRepairsOldEvents() async throws {
        try await SyncTestNode.withCleanup { cluster in
            try await partition(cluster)
        }
    }

    func partition(_ cluster: SyncTestNodes) async throws {
        var settings = PeerSync.Settings()
        settings.reconcileInterval = .milliseconds(300)
        let nodes = try await SyncTestNode.cluster(
            ["a", "b"], keyring: try SyncTestNode.keyring(), settings: settings, in: cluster)
        let (a, b) = (nodes[0], nodes[1])

        // Both hold origin c up to a minute ago; older c events each side alone holds lie under
        // the other's watermark, so catch-up never sends them: only reconciliation can.
        let now = SystemWallClock().nowMillis()
        let shared = (0..<10).map { SyncTestNode.event(wallMillis: now - 60_000 + UInt64($0), logical: 0, origin: "c") }
        let onlyA = (0..<20).map { SyncTestNode.event(wallMillis: now - 180_000, logical: UInt16($0), origin: "c") }
        let onlyB = (0..<15).map { SyncTestNode.event(wallMillis: now - 170_000 + 7, logical: UInt16($0), origin: "c") }
        for node in nodes { _ = try await node.store.insert(shared) }
        try await SyncTestNode.waitConnected(nodes)

        a.faults.block(["b"])
        b.faults.block(["a"])
        #expect(try await SyncTestNode.eventually { nodes.allSatisfy { $0.service.metrics().connections.isEmpty } })
        _ = try await a.store.append(contentsOf: SyncTestNode.payloads(100))
        _ = try await b.store.append(contentsOf: SyncTestNode.payloads(100))
        #expect(try await a.store.insert(onlyA).allSatisfy { $0 == .inserted })
        #expect(try await b.store.insert(onlyB).allSatisfy { $0 == .inserted })

        try await Task.sleep(for: .milliseconds(500))
        #expect(try a.store.reader.stats().events == 130)
        #expect(try b.store.reader.stats().events == 125)
        #expect(nodes.allSatisfy { $0.service.metrics().connections.isEmpty })

        a.faults.unblockAll()
        b.faults.unblockAll()
        try await SyncTestNode.waitConverged(nodes, events: 10 + 200 + 20 + 15)
        let repaired = a.service.metrics().eventsRepaired + b.service.metrics().eventsRepaired
        #expect(repaired >= 35)
        #expect(a.service.metrics().reconciliations > 0)
    }

    @Test func nodeWithAnotherKey_receivesNothing_andRejectionsGrow() async throws {
        try await SyncTestNode.withCleanup { cluster in
            try await anotherKey(cluster)
        }
    }

    func anotherKey(_ cluster: SyncTestNodes) async throws {
        let a = try await SyncTestNode(name: "a", keyring: try SyncTestNode.keyring(), in: cluster)
        let b = try await SyncTestNode(name: "b", keyring: try SyncTestNode.keyring(), in: cluster)
        let nodes = [a, b]
        _ = try await a.store.append(contentsOf: SyncTestNode.payloads(50))
        _ = try await b.store.append(contentsOf: SyncTestNode.payloads(50))
        SyncTestNode.connect(nodes)

        // "a" keeps dialing; each attempt is refused on both sides (each hello is sealed with a
        // key the other lacks).
        #expect(
            try await SyncTestNode.eventually {
                nodes.allSatisfy { $0.service.metrics().rejectedFrames[.unknownKey, default: 0] >= 2 }
            })
        let before = b.service.metrics().rejectedFramesTotal
        #expect(try await SyncTestNode.eventually { b.service.metrics().rejectedFramesTotal > before })
        for node in nodes {
            #expect(try node.store.reader.stats().events == 50)
            #expect(node.service.metrics().connections.isEmpty)
            #expect(node.service.metrics().eventsReceived == 0)
        }
    }

    @Test func cancellingRun_closesSocketsPromptly_andARestartReconnects() async throws {
        try await SyncTestNode.withCleanup { cluster in
            try await shutdown(cluster)
        }
    }

    func shutdown(_ cluster: SyncTestNodes) async throws {
        let keyring = try SyncTestNode.keyring()
        let nodes = try await SyncTestNode.cluster(["a", "b"], keyring: keyring, in: cluster)
        let (a, b) = (nodes[0], nodes[1])
        try await SyncTestNode.waitConnected(nodes)

        let startedAt = ContinuousClock.now
        a.task.cancel()
        _ = await a.task.result
        let stopped = ContinuousClock.now - startedAt
        // Below the 10 s a run that ignored cancellation would wait (the reconcile interval and
        // the handshake timeout), with room for the parallel suites loading both cores.
        #expect(stopped < .seconds(8), "run() took \(stopped) to return after cancellation")
        #expect(a.service.boundPort == nil)
        // b sees its socket closed.
        #expect(try await SyncTestNode.eventually { b.service.metrics().connections.isEmpty })

        // A new service on the same store (same process, so a newer boot) is accepted again.
        let service = SyncService(
            store: a.store, localNode: "a", host: "127.0.0.1", port: 0, keyring: keyring, faults: a.faults,
            logger: SyncTestNode.logger)
        let task = Task { try await service.run() }
        cluster.add(task)
        let port = try #require(await service.waitUntilBound())
        let peers = [SyncPeer(name: "a", host: "127.0.0.1", port: port), b.peer]
        service.updatePeers(peers)
        b.service.updatePeers(peers)
        _ = try await a.store.append(contentsOf: SyncTestNode.payloads(5))
        #expect(try await SyncTestNode.eventually { try b.store.reader.stats().events == 5 })
        #expect(b.service.metrics().rejectedFramesTotal == 0)
        task.cancel()
        _ = await task.result
    }
}

/// One node: a store in a temporary directory and a running sync service on an ephemeral port.
final class SyncTestNode: Sendable {
    static let logger = Logger(label: "bifrost.sync.test", factory: { _ in SwiftLogNoOpLogHandler() })

    let name: String
    let directory: String
    let store: EventStore
    let faults = FaultInjector()
    let service: SyncService
    let task: Task<Void, any Error>
    let port: Int

    init(
        name: String, keyring: Keyring?, settings: PeerSync.Settings = .init(), in started: SyncTestNodes
    )
        async throws
    {
        self.name = name
        directory =
            FileManager.default.temporaryDirectory
            .appendingPathComponent("bifrost-sync-\(name)-\(UUID().uuidString)").path
        var storeSettings = EventStore.Settings()
        storeSettings.mapSizeBytes = 256 << 20
        store = try EventStore.open(directory: directory, nodeName: name, settings: storeSettings)
        let service = SyncService(
            store: store, localNode: name, host: "127.0.0.1", port: 0, keyring: keyring, faults: faults,
            settings: settings, logger: Self.logger)
        self.service = service
        let task = Task { try await service.run() }
        self.task = task
        guard let port = await service.waitUntilBound() else {
            task.cancel()
            let result = await task.result
            try? await store.close()
            try result.get()
            throw SyncServiceError("\(name) stopped before binding")
        }
        self.port = port
        started.add(self)
    }

    var peer: SyncPeer { SyncPeer(name: name, host: "127.0.0.1", port: port) }

    static func keyring() throws -> Keyring {
        try Keyring(base64Keys: [Keyring.generateKeyBase64()])
    }

    static func cluster(
        _ names: [String], keyring: Keyring?, settings: PeerSync.Settings = .init(), in started: SyncTestNodes
    ) async throws -> [SyncTestNode] {
        var nodes: [SyncTestNode] = []
        for name in names {
            nodes.append(try await SyncTestNode(name: name, keyring: keyring, settings: settings, in: started))
        }
        connect(nodes)
        return nodes
    }

    /// Tells every node that all of `nodes` are live.
    static func connect(_ nodes: [SyncTestNode]) {
        for node in nodes { node.service.updatePeers(nodes.map(\.peer)) }
    }

    /// Runs `body`, then stops every node and task it started (services first, then stores)
    /// and removes their directories, whether `body` threw or not.
    static func withCleanup(_ body: (SyncTestNodes) async throws -> Void) async throws {
        let started = SyncTestNodes()
        let result: Result<Void, any Error>
        do {
            try await body(started)
            result = .success(())
        } catch {
            result = .failure(error)
        }
        let (nodes, tasks) = started.all
        for task in tasks { task.cancel() }
        for node in nodes { node.task.cancel() }
        for task in tasks { _ = await task.result }
        for node in nodes { _ = await node.task.result }
        for node in nodes {
            try? await node.store.close()
            try? FileManager.default.removeItem(atPath: node.directory)
        }
        try result.get()
    }

    static func payloads(_ count: Int) -> [Event.Payload] {
        (0..<count).map { i in
            .rateLimitIncrement(
                RateLimitIncrement(keys: ["vk:\(i % 7)"], windowStartMillis: 0, windowMillis: 60_000))
        }
    }

    static func event(wallMillis: UInt64, logical: UInt16, origin: String) -> Event {
        Event(
            id: EventID(hlc: HLCTimestamp(wallMillis: wallMillis, logical: logical), origin: NodeID(name: origin)),
            payload: .rateLimitIncrement(
                RateLimitIncrement(keys: ["vk:old"], windowStartMillis: 0, windowMillis: 60_000)))
    }

    /// Polls `condition` every 25 ms until it holds or the deadline passes.
    static func eventually(
        within deadline: Duration = SyncServiceTests.deadline, _ condition: () throws -> Bool
    ) async throws -> Bool {
        let end = ContinuousClock.now + deadline
        while ContinuousClock.now < end {
            if try condition() { return true }
            try await Task.sleep(for: .milliseconds(25))
        }
        return try condition()
    }

    static func waitConnected(_ nodes: [SyncTestNode]) async throws {
        let connected = try await eventually {
            nodes.allSatisfy { node in node.service.metrics().connections.count == nodes.count - 1 }
        }
        #expect(connected, "connections: \(nodes.map { "\($0.name): \($0.service.metrics().connections)" })")
    }

    /// Waits until every node holds `events` events and the same digest root.
    static func waitConverged(_ nodes: [SyncTestNode], events: UInt64) async throws {
        let converged = try await eventually {
            let stats = try nodes.map { try $0.store.reader.stats() }
            return stats.allSatisfy { $0.events == events && $0.root == stats[0].root }
        }
        let counts = try nodes.map { "\($0.name): \(try $0.store.reader.stats().events)" }
        #expect(converged, "expected \(events) events and equal roots everywhere; have \(counts)")
        if converged {
            let roots = try nodes.map { try $0.store.reader.digest(.root) }
            #expect(Set(roots.map { "\($0)" }).count == 1)
        }
    }
}

/// What a test started, for `SyncTestNode.withCleanup`.
final class SyncTestNodes: Sendable {
    private let state = Mutex<(nodes: [SyncTestNode], tasks: [Task<Void, any Error>])>(([], []))

    func add(_ node: SyncTestNode) { state.withLock { $0.nodes.append(node) } }

    func add(_ task: Task<Void, any Error>) { state.withLock { $0.tasks.append(task) } }

    var all: (nodes: [SyncTestNode], tasks: [Task<Void, any Error>]) { state.withLock { $0 } }
}
