import EventLog
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle
import Synchronization

/// A node to keep an event stream with: a live member, as membership reports it.
public struct SyncPeer: Hashable, Sendable {
    public var name: String
    public var host: String
    /// The peer's sync (TCP) port.
    public var port: Int

    public init(name: String, host: String, port: Int) {
        self.name = name
        self.host = host
        self.port = port
    }
}

/// What the sync service has done, for metrics. Counters include closed connections.
public struct SyncMetrics: Sendable, Equatable {
    /// Peers with an established stream (hello exchanged), sorted.
    public var connections: [String] = []
    public var eventsSent = 0
    public var eventsReceived = 0
    public var eventsRepaired = 0
    public var reconciliations = 0
    public var reconcileMessages = 0
    public var reconcileBytes = 0
    /// Frames dropped by the transport, per reason (every code present).
    public var rejectedFrames: [EnvelopeRejection.Code: UInt64] = [:]
    /// Frames that opened but broke the protocol (undecodable, wrong kind or sender, bad hello).
    public var protocolErrors = 0
    /// Connections whose TLS handshake failed (`cluster.tls`): a peer certificate the CA did not
    /// sign, no certificate, this node's certificate refused by the peer, or not TLS at all.
    public var tlsHandshakeFailures = 0
    /// Propagation samples held (the last `SyncService.propagationSampleCapacity`).
    public var propagationSamples = 0
    /// Commit at origin (event HLC wall time) to commit here, of events received by streaming;
    /// nil without samples. Includes the clock offset between the two nodes.
    public var propagationP50Millis: Double?
    public var propagationP99Millis: Double?

    public init() {}

    public var rejectedFramesTotal: UInt64 { rejectedFrames.values.reduce(0, +) }
}

/// Why the sync service stopped on its own.
public struct SyncServiceError: Error, Sendable, CustomStringConvertible {
    public var message: String

    public init(_ message: String) { self.message = message }

    public var description: String { message }
}

/// The TCP shell of the event-sync protocol (`PeerSync`): one connection per pair of live
/// nodes, each running a `PeerSync` in one task.
///
/// Topology: of two nodes, the one with the smaller name dials (retrying with exponential
/// backoff, 100 ms to 5 s, while the peer is listed by `updatePeers` and not blocked by the
/// `FaultInjector`), the other accepts. A peer that reconnects replaces its older connection.
///
/// Wire: each TCP frame (`FrameDecoder`, 4-byte length) holds one `Envelope` sealed for the
/// `tcp` channel. Each side's first frame is an `EnvelopeKind.hello` carrying
/// `SyncCodec.encode(.hello(…))`; it authenticates the peer's name, since only key holders can
/// seal and the name must hash to the envelope's sender id. Every later frame is an
/// `EnvelopeKind.streamFrame` with one `SyncCodec` message, from the same sender. Without a
/// keyring (an unencrypted cluster), frames carry the same plaintext unsealed (see
/// `StreamFraming`). One `Opener` serves every connection, so a frame replayed into another
/// connection is refused as a replay. A frame that fails to open or decode closes its
/// connection (warning with `peer.address`); rejections are counted in `transportStats`.
///
/// With `ClusterTLS`, TCP carries mutual TLS and the frames (still sealed) travel inside it:
///
/// ```
///  TCP | TLS 1.3 (NIOSSL; CA-verified certificates both ways) | 4-byte length | Envelope
/// ```
///
/// A failed handshake closes the connection (warning with `peer.address`, counted in
/// `SyncMetrics.tlsHandshakeFailures`); a dialer retries under its usual backoff.
///
/// Per connection, one task takes inbound frames, local commits (its own subscription to
/// `EventStore.committedEvents()`, made before the hello is built so nothing falls between)
/// and ticks (every 200 ms, from `run()`) from a bounded mailbox, calls `PeerSync` and
/// performs its outputs: writes awaited one by one (backpressure), inserts awaited before the
/// acknowledgement. Catch-up after hello is sent batch by batch whenever the mailbox is empty.
public final class SyncService: Service, Sendable {
    public static let tickInterval: Duration = .milliseconds(200)
    public static let initialBackoff: Duration = .milliseconds(100)
    public static let maxBackoff: Duration = .seconds(5)
    /// A dialed connection that lasted this long resets the backoff.
    public static let healthyConnection: Duration = .seconds(1)
    /// An accepted connection must say hello within this.
    public static let handshakeTimeout: Duration = .seconds(10)
    public static let connectTimeout: Duration = .seconds(2)
    public static let propagationSampleCapacity = 4096

    public let store: EventStore
    public let localNode: String
    public let host: String
    /// The configured port; 0 picks a free one (`boundPort`).
    public let port: Int
    public let faults: FaultInjector
    public let settings: PeerSync.Settings
    /// Sealed, opened and rejected frames of this service.
    public let transportStats: TransportStats
    /// Mutual TLS under the frames; nil: plain TCP.
    public let tls: ClusterTLS?
    let logger: Logger
    let framing: StreamFraming
    private let epoch = ContinuousClock.now
    private let wallClock = SystemWallClock()
    private let state = Mutex(State())

    private enum Phase {
        case idle
        case running(AsyncStream<Command>.Continuation)
        case stopped
    }

    private enum Command: Sendable {
        case accepted(SyncSocket)
        case dial(String)
    }

    private struct Connection {
        var handle: ConnectionHandle
        var peer: String?
        var established = false
        var counters = PeerSync.Counters()
        var watermarks: [NodeID: HLCTimestamp] = [:]
    }

    private struct State {
        var phase = Phase.idle
        var boundPort: Int?
        var serverChannel: (any Channel)?
        var peers: [String: SyncPeer] = [:]
        var dialers: Set<String> = []
        var connections: [UInt64: Connection] = [:]
        var nextConnectionID: UInt64 = 0
        var closedCounters = PeerSync.Counters()
        var protocolErrors = 0
        var tlsHandshakeFailures = 0
        /// Warnings about connections that never said hello (anything can dial the port).
        var strangerWarnings = WarningThrottle()
        var propagation = SampleRing(capacity: SyncService.propagationSampleCapacity)
        var acknowledgementSubscribers: [Int: AsyncStream<Void>.Continuation] = [:]
        var nextSubscriber = 0

        var isRunning: Bool {
            if case .running = phase { return true }
            return false
        }

        /// Marks and returns the listed peers this node dials (larger names) that have no dialer.
        mutating func startDialers(localNode: String) -> [String] {
            let names = peers.keys.filter { $0 > localNode && !dialers.contains($0) }.sorted()
            dialers.formUnion(names)
            return names
        }
    }

    /// - Parameters:
    ///   - keyring: the cluster keys; nil for an unencrypted cluster (frames travel in clear,
    ///     which the configuration must allow explicitly).
    ///   - tls: mutual TLS for every connection, dialed and accepted; nil for plain TCP. Every
    ///     node of a cluster must agree: a TLS node and a plain one cannot talk.
    ///   - faults: partitions to simulate; share one with the gossip layer.
    public init(
        store: EventStore, localNode: String, host: String, port: Int, keyring: Keyring?, tls: ClusterTLS? = nil,
        faults: FaultInjector, settings: PeerSync.Settings = .init(), logger: Logger
    ) {
        self.store = store
        self.localNode = localNode
        self.host = host
        self.port = port
        self.faults = faults
        self.settings = settings
        self.transportStats = TransportStats()
        self.tls = tls
        var logger = logger
        logger[metadataKey: "node.id"] = "\(localNode)"
        self.logger = logger
        self.framing = StreamFraming(
            keyring: keyring, sender: NodeID(name: localNode).rawValue, boot: Self.nextBoot(),
            stats: transportStats)
    }

    private static let lastBoot = Mutex<UInt64>(0)

    /// The process start, or later: each service of a process seals with a newer boot than the
    /// one before, so receivers accept a service restarted in the same process (its counters
    /// start over).
    private static func nextBoot() -> UInt64 {
        lastBoot.withLock { last in
            last = max(Sealer.processBootMillis, SystemWallClock().nowMillis(), last + 1)
            return last
        }
    }

    // MARK: Service

    /// Listens, dials, streams; returns after closing every socket once cancelled or shut down
    /// gracefully. Throws if it cannot bind, or the listener fails. Runs once per instance.
    public func run() async throws {
        let (commands, continuation) = AsyncStream.makeStream(of: Command.self)
        let started = state.withLock { s in
            guard case .idle = s.phase else { return false }
            s.phase = .running(continuation)
            return true
        }
        guard started else { throw SyncServiceError("sync service for \(localNode) was already run") }
        defer { state.withLock { $0.phase = .stopped } }

        let server: NIOAsyncChannel<SyncSocket, Never>
        let tls = self.tls
        do {
            server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
                .bind(host: host, port: port) { [self] channel in
                    channel.eventLoop.makeCompletedFuture {
                        // A connection accepted while the service stops is refused here: once the
                        // accept loop has ended, an async channel made for it would be dropped
                        // unconsumed, which NIO traps.
                        guard state.withLock({ $0.isRunning }) else { throw ChannelError.ioOnClosedChannel }
                        return try Self.wrap(channel, tls: tls, dialed: false)
                    }
                }
        } catch {
            logger.error("sync cannot listen", metadata: ["sync.address": "\(host):\(port)", "error": "\(error)"])
            throw error
        }
        let dialers = state.withLock { s -> [String] in
            s.boundPort = server.channel.localAddress?.port
            s.serverChannel = server.channel
            return s.startDialers(localNode: localNode)
        }
        logger.info(
            "sync listening",
            metadata: [
                "sync.address": "\(server.channel.localAddress.map { "\($0)" } ?? "?")", "sync.tls": "\(tls != nil)",
            ])

        try await withTaskCancellationOrGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { try await self.accept(server, continuation) }
                group.addTask { await self.tickLoop() }
                for name in dialers { group.addTask { await self.dialLoop(name) } }
                for await command in commands {
                    switch command {
                    case .accepted(let channel): group.addTask { await self.serve(channel, dialed: nil) }
                    case .dial(let name): group.addTask { await self.dialLoop(name) }
                    }
                }
                group.cancelAll()
            }
        } onCancelOrGracefulShutdown: {
            self.shutdown()
        }
        state.withLock { $0.boundPort = nil }
        logger.info("sync stopped")
    }

    /// Stops taking work and closes the listener and every connection; `run` then returns.
    private func shutdown() {
        let (continuation, server, handles) = state.withLock {
            s -> (AsyncStream<Command>.Continuation?, (any Channel)?, [ConnectionHandle]) in
            guard case .running(let continuation) = s.phase else { return (nil, nil, []) }
            s.phase = .stopped
            defer { s.serverChannel = nil }
            return (continuation, s.serverChannel, s.connections.values.map(\.handle))
        }
        continuation?.finish()
        server?.close(promise: nil)
        for handle in handles { handle.close() }
    }

    /// The port listened on, once bound (until `run` returns).
    public var boundPort: Int? { state.withLock { $0.boundPort } }

    /// Waits until `run` has bound its port (nil if it stopped first or the task is cancelled).
    public func waitUntilBound() async -> Int? {
        while !Task.isCancelled {
            let (port, stopped) = state.withLock { s -> (Int?, Bool) in
                if case .stopped = s.phase { return (nil, true) }
                return (s.boundPort, false)
            }
            if port != nil || stopped { return port }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return nil
    }

    // MARK: Peers

    /// The live members (this node may be among them). Dials the new ones this node should dial
    /// and closes the connections of peers no longer listed. A peer that connects before
    /// membership lists it is served (membership may lag behind the dialer's).
    public func updatePeers(_ peers: [SyncPeer]) {
        let others = peers.filter { $0.name != localNode }
        let (departed, dials, continuation) = state.withLock {
            s -> ([(String, ConnectionHandle)], [String], AsyncStream<Command>.Continuation?) in
            s.peers = Dictionary(others.map { ($0.name, $0) }, uniquingKeysWith: { _, last in last })
            let departed = s.connections.values.compactMap { c in
                c.peer.flatMap { s.peers[$0] == nil ? ($0, c.handle) : nil }
            }
            guard case .running(let continuation) = s.phase else { return (departed, [], nil) }
            return (departed, s.startDialers(localNode: localNode), continuation)
        }
        for (name, handle) in departed {
            logger.info("sync closing connection to departed member", metadata: ["peer.id": "\(name)"])
            handle.close()
        }
        for name in dials { continuation?.yield(.dial(name)) }
        // The members whose acknowledgements count changed.
        acknowledgementsChanged()
    }

    /// Yields whenever what peers acknowledged may have grown: an acknowledgement or a hello
    /// arrived, or the peers changed (`updatePeers`). Consecutive changes coalesce into one
    /// element; read `peerWatermarks()` after each.
    public func acknowledgementChanges() -> AsyncStream<Void> {
        let (stream, continuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        let id = state.withLock { s in
            s.nextSubscriber += 1
            s.acknowledgementSubscribers[s.nextSubscriber] = continuation
            return s.nextSubscriber
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.acknowledgementSubscribers.removeValue(forKey: id) }
        }
        return stream
    }

    private func acknowledgementsChanged() {
        for subscriber in state.withLock({ Array($0.acknowledgementSubscribers.values) }) { subscriber.yield() }
    }

    private func accept(
        _ server: NIOAsyncChannel<SyncSocket, Never>,
        _ commands: AsyncStream<Command>.Continuation
    ) async throws {
        do {
            try await server.executeThenClose { inbound in
                for try await child in inbound {
                    if case .terminated = commands.yield(.accepted(child)) {
                        try? await child.stream.executeThenClose { _, _ in }
                    }
                }
            }
        } catch {
            guard state.withLock({ $0.isRunning }) else { return }
            logger.error("sync listener failed", metadata: ["error": "\(error)"])
            shutdown()
            throw error
        }
        if state.withLock({ $0.isRunning }) {
            logger.error("sync listener closed unexpectedly")
            shutdown()
            throw SyncServiceError("sync listener of \(localNode) closed unexpectedly")
        }
    }

    private func tickLoop() async {
        while true {
            do { try await Task.sleep(for: Self.tickInterval) } catch { return }
            let handles = state.withLock { $0.connections.values.map(\.handle) }
            for handle in handles { handle.mailbox.tick() }
        }
    }

    /// Keeps one connection to `name` while it is listed: connect, serve, back off, repeat.
    private func dialLoop(_ name: String) async {
        var backoff = Self.initialBackoff
        var failures = 0
        let tls = self.tls
        while let peer = dialTarget(name) {
            if faults.isBlocked(name) {
                do { try await Task.sleep(for: Self.initialBackoff) } catch { break }
                continue
            }
            do {
                let channel = try await PendingConnect().run {
                    try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                        .connectTimeout(.milliseconds(Int64(Self.connectTimeout / .milliseconds(1))))
                        .channelOption(.tcpOption(.tcp_nodelay), value: 1)
                        .connect(host: peer.host, port: peer.port) { channel in
                            channel.eventLoop.makeCompletedFuture { try Self.wrap(channel, tls: tls, dialed: true) }
                        }
                }
                failures = 0
                if let lasted = await serve(channel, dialed: name), lasted >= Self.healthyConnection {
                    backoff = Self.initialBackoff
                }
            } catch is CancellationError {
                break
            } catch {
                failures += 1
                let level: Logger.Level = failures == 1 ? .info : .debug
                logger.log(
                    level: level, "sync cannot connect",
                    metadata: [
                        "peer.id": "\(name)", "peer.address": "\(peer.host):\(peer.port)", "error": "\(error)",
                        "sync.retry_in": "\(backoff)",
                    ])
            }
            do { try await Task.sleep(for: backoff) } catch { break }
            backoff = min(backoff * 2, Self.maxBackoff)
        }
        state.withLock { _ = $0.dialers.remove(name) }
    }

    /// Where to dial `name` next, or nil (and the dialer retires) once it is no longer listed.
    private func dialTarget(_ name: String) -> SyncPeer? {
        state.withLock { s in
            guard s.isRunning, !Task.isCancelled, let peer = s.peers[name] else {
                s.dialers.remove(name)
                return nil
            }
            return peer
        }
    }

    /// The pipeline: [TLS, handshake observer,] frame decoder, frame encoder, async channel.
    private static func wrap(_ channel: any Channel, tls: ClusterTLS?, dialed: Bool) throws -> SyncSocket {
        let pipeline = channel.pipeline.syncOperations
        var handshake: EventLoopFuture<Void>?
        if let tls {
            if dialed {
                try pipeline.addHandler(try tls.makeClientHandler())
            } else {
                try pipeline.addHandler(tls.makeServerHandler())
            }
            let promise = channel.eventLoop.makePromise(of: Void.self)
            try pipeline.addHandler(TLSHandshakeObserver(handshake: promise))
            handshake = promise.futureResult
        }
        try pipeline.addHandler(ByteToMessageHandler(FrameDecoder()))
        try pipeline.addHandler(MessageToByteHandler(FrameEncoder()))
        return SyncSocket(stream: try NIOAsyncChannel(wrappingChannelSynchronously: channel), tlsHandshake: handshake)
    }

    // MARK: Connections

    /// Runs one connection to its end. Returns how long it was established (nil: never).
    @discardableResult
    private func serve(_ socket: SyncSocket, dialed: String?) async -> Duration? {
        let channel = socket.stream
        let address = channel.channel.remoteAddress.map { "\($0)" } ?? "unknown"
        let mailbox = ConnectionMailbox()
        // Subscribed before the hello reads the watermarks: every later commit is streamed.
        let commits = store.committedEvents()
        let registered = state.withLock { s -> ConnectionHandle? in
            guard s.isRunning else { return nil }
            s.nextConnectionID += 1
            let handle = ConnectionHandle(id: s.nextConnectionID, channel: channel.channel, mailbox: mailbox)
            s.connections[handle.id] = Connection(handle: handle, peer: dialed)
            return handle
        }
        guard let handle = registered else {
            try? await channel.channel.close()
            return nil
        }
        var connection = SyncConnection(
            service: self, id: handle.id, mailbox: mailbox, address: address, dialed: dialed)
        var reason = CloseReason.closedLocally
        await withTaskCancellationHandler {
            do {
                try await channel.executeThenClose { inbound, outbound in
                    await withDiscardingTaskGroup { group in
                        group.addTask {
                            do {
                                for try await frame in inbound {
                                    guard await mailbox.push(.frame(frame)) else { return }
                                }
                                _ = await mailbox.push(.inboundEnded(nil))
                            } catch {
                                _ = await mailbox.push(.inboundEnded(error))
                            }
                        }
                        group.addTask {
                            for await batch in commits {
                                guard await mailbox.push(.commits(batch)) else { return }
                            }
                            _ = await mailbox.push(.commitsEnded)
                        }
                        reason = await connection.run(outbound)
                        handle.close()
                        group.cancelAll()
                    }
                }
            } catch {
                reason = .failed(error)
            }
        } onCancel: {
            handle.close()
        }

        if let failure = await tlsFailure(socket, reason) {
            reason = .tlsHandshakeFailed(failure)
        }
        let counters = connection.sync.counters
        let countFailure = reason.isTLSHandshakeFailure
        state.withLock { s in
            s.connections[handle.id] = nil
            s.closedCounters.add(counters)
            if countFailure && s.isRunning { s.tlsHandshakeFailures += 1 }
        }
        if case .inboundFailed(let error) = reason, let frame = error as? FrameError, frame.code == .tooLarge {
            transportStats.recordRejected(.oversized)
        }
        var metadata: Logger.Metadata = ["peer.address": "\(address)", "sync.reason": "\(reason)"]
        if let peer = connection.peer ?? dialed { metadata["peer.id"] = "\(peer)" }
        if let code = reason.rejectionCode { metadata["sync.rejection"] = "\(code)" }
        if reason.isWarning {
            // A peer's connection always logs; one that never said hello is throttled.
            let stranger = connection.establishedAt == nil && dialed == nil
            let now = now()
            let (log, suppressed) = stranger ? state.withLock { $0.strangerWarnings.admit(now: now) } : (true, 0)
            if suppressed > 0 { metadata["sync.suppressed_warnings"] = "\(suppressed)" }
            if log { logger.warning("sync connection dropped", metadata: metadata) }
        } else if connection.establishedAt != nil {
            logger.info("sync disconnected", metadata: metadata)
        } else {
            logger.debug("sync connection closed before hello", metadata: metadata)
        }
        return connection.establishedAt.map { ContinuousClock.now - $0 }
    }

    /// The TLS error that ended the connection before the peer's first frame, if that is why
    /// it ended: the handshake failed on this side, or the peer refused this node's certificate
    /// (`TLSHandshakeObserver`). Nil without TLS, when TLS went fine, or when the connection
    /// ended for a local reason (shutdown, hello timeout).
    private func tlsFailure(_ socket: SyncSocket, _ reason: CloseReason) async -> (any Error)? {
        guard let handshake = socket.tlsHandshake, reason.isPeerOrNetwork else { return nil }
        do {
            // Resolved by now or soon: the channel is closed or closing.
            try await handshake.get()
            return nil
        } catch {
            return TLSHandshakeObserver.isTLSFailure(error) ? error : nil
        }
    }

    /// The connection's hello named `peer`: it replaces any older connection to that peer.
    func established(_ id: UInt64, peer: String) {
        let stale = state.withLock { s -> [ConnectionHandle] in
            s.connections[id]?.peer = peer
            s.connections[id]?.established = true
            return s.connections.values.filter { $0.peer == peer && $0.handle.id != id }.map(\.handle)
        }
        for handle in stale { handle.close() }
        acknowledgementsChanged()
    }

    func publish(_ id: UInt64, counters: PeerSync.Counters, watermarks: [NodeID: HLCTimestamp]) {
        let (advanced, subscribers) = state.withLock { s -> (Bool, [AsyncStream<Void>.Continuation]) in
            let advanced = s.connections[id].map { $0.watermarks != watermarks } ?? false
            s.connections[id]?.counters = counters
            s.connections[id]?.watermarks = watermarks
            return (advanced, advanced ? Array(s.acknowledgementSubscribers.values) : [])
        }
        if advanced { for subscriber in subscribers { subscriber.yield() } }
    }

    func countProtocolError() { state.withLock { $0.protocolErrors += 1 } }

    func recordPropagation(_ samples: [Int64]) {
        state.withLock { s in
            for sample in samples { s.propagation.append(sample) }
        }
    }

    /// Monotonic time for `PeerSync` schedules.
    func now() -> Duration { ContinuousClock.now - epoch }

    func wallMillis() -> UInt64 { wallClock.nowMillis() }

    // MARK: Observability

    public func metrics() -> SyncMetrics {
        let (connections, counters, protocolErrors, tlsHandshakeFailures, samples) = state.withLock {
            s -> ([String], PeerSync.Counters, Int, Int, [Int64]) in
            var counters = s.closedCounters
            for connection in s.connections.values { counters.add(connection.counters) }
            let names = s.connections.values.filter(\.established).compactMap(\.peer)
            return (
                Array(Set(names)).sorted(), counters, s.protocolErrors, s.tlsHandshakeFailures, s.propagation.samples
            )
        }
        var metrics = SyncMetrics()
        metrics.connections = connections
        metrics.eventsSent = counters.eventsSent
        metrics.eventsReceived = counters.eventsReceived
        metrics.eventsRepaired = counters.eventsRepaired
        metrics.reconciliations = counters.reconciliations
        metrics.reconcileMessages = counters.reconcileMessages
        metrics.reconcileBytes = counters.reconcileBytes
        metrics.rejectedFrames = transportStats.snapshot().rejected
        metrics.protocolErrors = protocolErrors
        metrics.tlsHandshakeFailures = tlsHandshakeFailures
        metrics.propagationSamples = samples.count
        let sorted = samples.sorted()
        metrics.propagationP50Millis = Self.percentile(sorted, 0.50)
        metrics.propagationP99Millis = Self.percentile(sorted, 0.99)
        return metrics
    }

    /// Nearest rank.
    static func percentile(_ sorted: [Int64], _ p: Double) -> Double? {
        guard !sorted.isEmpty else { return nil }
        let rank = Int((p * Double(sorted.count)).rounded(.up)) - 1
        return Double(sorted[min(max(rank, 0), sorted.count - 1)])
    }

    /// What each connected peer has acknowledged holding, per origin (its hello, then acks).
    /// The least of what each of `peers` acknowledged of `origin`'s events over its established
    /// streams; nil when one of them acknowledged none. `.max` for no peers.
    public func acknowledged(of origin: NodeID, byEach peers: [String]) -> HLCTimestamp? {
        state.withLock { s in
            var through = HLCTimestamp.max
            for name in peers {
                var mark: HLCTimestamp?
                for connection in s.connections.values where connection.established && connection.peer == name {
                    if let m = connection.watermarks[origin] { mark = max(mark ?? m, m) }
                }
                guard let mark else { return nil }
                through = min(through, mark)
            }
            return through
        }
    }

    public func peerWatermarks() -> [String: [NodeID: HLCTimestamp]] {
        state.withLock { s in
            var out: [String: [NodeID: HLCTimestamp]] = [:]
            for connection in s.connections.values where connection.established {
                guard let peer = connection.peer else { continue }
                out[peer, default: [:]].merge(connection.watermarks) { max($0, $1) }
            }
            return out
        }
    }
}

extension PeerSync.Counters {
    fileprivate mutating func add(_ other: PeerSync.Counters) {
        reconciliations += other.reconciliations
        reconcileMessages += other.reconcileMessages
        reconcileBytes += other.reconcileBytes
        eventsSent += other.eventsSent
        eventsReceived += other.eventsReceived
        eventsRepaired += other.eventsRepaired
    }
}

/// The last `capacity` samples.
struct SampleRing: Sendable {
    let capacity: Int
    private(set) var samples: [Int64] = []
    private var next = 0

    init(capacity: Int) {
        self.capacity = capacity
    }

    mutating func append(_ sample: Int64) {
        if samples.count < capacity {
            samples.append(sample)
        } else {
            samples[next] = sample
        }
        next = (next + 1) % capacity
    }
}
