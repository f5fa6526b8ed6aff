import EventLog
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

/// A member as this node sees it, with how long ago it last heard from it.
public struct GossipMember: Sendable, Hashable {
    public var member: SWIM.Member
    public var lastSeenMillisAgo: UInt64
}

/// A status transition (first sighting included) for the audit trail.
public struct MemberChange: Sendable, Hashable {
    public var member: SWIM.Member
    public var previous: SWIM.Status?
}

/// Gossip counters for metrics.
public struct GossipMetrics: Sendable, Hashable {
    public var messagesSent: UInt64
    public var messagesReceived: UInt64
    /// Sent + received over the last few seconds.
    public var messagesPerSecond: Double
    public var transport: TransportStats.Snapshot
}

/// The UDP shell around `SWIMInstance`: ticks it, seals and sends what it says, opens and feeds
/// it what arrives. Datagrams are sealed with the cluster keyring (a node without the key can
/// neither join nor inject) and never exceed `settings.maxPacketSize` on the wire.
public final class GossipService: Service, Sendable {
    private struct State {
        var instance: SWIMInstance<SystemRandomNumberGenerator>
        var lastSeen: [String: ContinuousClock.Instant] = [:]
        var sent: UInt64 = 0
        var received: UInt64 = 0
        var recent: [(ContinuousClock.Instant, UInt64)] = []
        var resolved: [String: SocketAddress] = [:]
        var subscribers: [Int: AsyncStream<MemberChange>.Continuation] = [:]
        var nextSubscriber = 0
        /// Directives produced outside the loops (external detectors), performed at the next tick.
        var pending: [SWIM.Directive] = []
    }

    public let localName: String
    private let host: String
    private let port: Int
    private let seeds: [String]
    private let faults: FaultInjector
    private let logger: Logger
    private let settings: SWIM.Settings
    private let state: Mutex<State>
    private let sealer: Mutex<Sealer?>
    private let opener: Mutex<Opener?>
    private let stats: TransportStats
    private let origin = ContinuousClock.now
    private let leaving = Atomic<Bool>(false)
    private let encrypted: Bool
    private let compression: Bool
    private let bound = Mutex<Int?>(nil)
    /// Live (alive or suspect) members in the high 32 bits, members not `left` in the low ones,
    /// this node included: updated on every status change, read without a lock.
    private let counts = Atomic<UInt64>(1 << 32 | 1)
    /// Names of the live (alive or suspect) members other than this node, updated on every
    /// status change.
    private let activePeers = Mutex<[String]>([])

    public init(
        local: SWIM.Member, settings: SWIM.Settings, host: String, port: Int, keyring: Keyring?, faults: FaultInjector,
        seeds: [String], compression: Bool = false, logger: Logger
    ) {
        var settings = settings
        if keyring != nil { settings.maxPacketSize -= Envelope.overheadByteCount }
        settings.maxPacketSize -= 1  // the compression marker
        self.compression = compression
        self.settings = settings
        self.localName = local.name
        self.host = host
        self.port = port
        self.seeds = seeds.filter { $0 != local.gossipAddress }
        self.faults = faults
        self.logger = logger
        state = Mutex(
            State(instance: SWIMInstance(local: local, settings: settings, rng: SystemRandomNumberGenerator())))
        let sender = NodeID(name: local.name).rawValue
        let stats = TransportStats()
        self.stats = stats
        sealer = Mutex(keyring.map { Sealer(keyring: $0, sender: sender, stats: stats) })
        opener = Mutex(keyring.map { Opener(keyring: $0, stats: stats) })
        encrypted = keyring != nil
    }

    /// The gossip datagrams accepted so far, per sender: saved in the data directory
    /// (`ReplayMarksFile`) and restored at the next start.
    public func replayMarks() -> [ReplayWindow.Mark] { opener.withLock { $0?.replayMarks(.udp) ?? [] } }

    /// Refuses, after a restart, every datagram accepted before it.
    public func restoreReplayMarks(_ marks: [ReplayWindow.Mark]) {
        opener.withLock { $0?.restoreReplayMarks(marks, channel: .udp) }
    }

    /// The UDP port actually bound (useful with port 0).
    public var boundPort: Int? { bound.withLock { $0 } }

    private var now: Duration { ContinuousClock.now - origin }

    public func members() -> [GossipMember] {
        let instant = ContinuousClock.now
        return state.withLock { s in
            s.instance.members.map { m in
                let seen = s.lastSeen[m.name].map { instant - $0 } ?? .zero
                let ms = UInt64(
                    max(0, seen.components.seconds * 1000 + seen.components.attoseconds / 1_000_000_000_000_000))
                return GossipMember(member: m, lastSeenMillisAgo: ms)
            }
        }
    }

    /// Live members (alive or suspect), this node included: a snapshot kept on status changes.
    public var liveMemberCount: Int { Int(counts.load(ordering: .relaxed) >> 32) }

    /// The live (alive or suspect) members other than this node: a snapshot kept on status
    /// changes.
    public var activePeerNames: [String] { activePeers.withLock { $0 } }

    /// Members known and not `left`, this node included.
    public var knownMemberCount: Int { Int(counts.load(ordering: .relaxed) & 0xFFFF_FFFF) }

    /// Every status transition from now on.
    public func statusChanges() -> AsyncStream<MemberChange> {
        let (stream, continuation) = AsyncStream.makeStream(
            of: MemberChange.self, bufferingPolicy: .bufferingNewest(4096))
        let id = state.withLock { s in
            s.nextSubscriber += 1
            s.subscribers[s.nextSubscriber] = continuation
            return s.nextSubscriber
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.subscribers.removeValue(forKey: id) }
        }
        // Members already known count as first sightings for a late subscriber.
        for m in state.withLock({ $0.instance.members }) { continuation.yield(MemberChange(member: m, previous: nil)) }
        return stream
    }

    public func setLocalHealth(_ bytes: [UInt8]) {
        state.withLock { $0.instance.setLocalHealth(bytes) }
    }

    /// The gateway's request-timeout detector: a peer that does not answer requests.
    public func reportUnreachable(_ name: String) {
        let at = now
        state.withLock { s in s.pending += s.instance.onPeerUnreachable(name, now: at) }
    }

    public func metrics() -> GossipMetrics {
        let instant = ContinuousClock.now
        return state.withLock { s in
            s.recent.removeAll { instant - $0.0 > .seconds(5) }
            let window = s.recent.first.map { (instant - $0.0) } ?? .zero
            let count = s.recent.reduce(0) { $0 + $1.1 }
            let seconds = Double(window.components.seconds) + Double(window.components.attoseconds) * 1e-18
            return GossipMetrics(
                messagesSent: s.sent, messagesReceived: s.received,
                messagesPerSecond: seconds > 0.5 ? Double(count) / seconds : 0, transport: stats.snapshot())
        }
    }

    public func run() async throws {
        let channel = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<AddressedEnvelope<ByteBuffer>, AddressedEnvelope<ByteBuffer>>(
                        wrappingChannelSynchronously: channel)
                }
            }
        bound.withLock { $0 = channel.channel.localAddress?.port }
        logger.info("gossip listening", metadata: ["gossip.port": .stringConvertible(boundPort ?? port)])
        try await channel.executeThenClose { inbound, outbound in
            let directives = state.withLock { $0.instance.join(seeds: seeds, now: now) }
            await perform(directives, outbound)
            try await withGracefulShutdownHandler {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { await self.tickLoop(outbound) }
                    group.addTask {
                        for try await datagram in inbound { await self.receive(datagram, outbound) }
                    }
                    // The tick loop ends after a graceful leave; then stop reading.
                    try await group.next()
                    group.cancelAll()
                }
            } onGracefulShutdown: {
                self.leaving.store(true, ordering: .releasing)
            }
        }
        let subscribers = state.withLock { s in
            defer { s.subscribers.removeAll() }
            return s.subscribers.values
        }
        for c in subscribers { c.finish() }
    }

    private func tickLoop(_ outbound: NIOAsyncChannelOutboundWriter<AddressedEnvelope<ByteBuffer>>) async {
        while !Task.isCancelled {
            if leaving.load(ordering: .acquiring) {
                // Tell everyone we leave (peers record `left`, not `dead`), give the news a few
                // probe intervals to spread, then stop.
                let directives = state.withLock { $0.instance.leave(now: now) }
                await perform(directives, outbound)
                let end = ContinuousClock.now + settings.probeInterval * 2
                while ContinuousClock.now < end && !Task.isCancelled {
                    try? await Task.sleep(for: .milliseconds(50))
                    await perform(state.withLock { $0.instance.onTick(now: now) }, outbound)
                }
                logger.info("left the cluster")
                return
            }
            let at = now
            let directives = state.withLock { s in
                defer { s.pending.removeAll() }
                return s.pending + s.instance.onTick(now: at)
            }
            await perform(directives, outbound)
            try? await Task.sleep(for: .milliseconds(50))
        }
    }

    private func receive(
        _ datagram: AddressedEnvelope<ByteBuffer>,
        _ outbound: NIOAsyncChannelOutboundWriter<AddressedEnvelope<ByteBuffer>>
    ) async {
        var payload = Array(datagram.data.readableBytesView)
        if encrypted {
            let nowMillis = SystemWallClock().nowMillis()
            let opened = opener.withLock { opener -> Result<Opener.Opened, EnvelopeRejection>? in
                guard var o = opener else { return nil }
                defer { opener = o }
                do throws(EnvelopeRejection) {
                    return .success(try o.open(payload, channel: .udp, nowMillis: nowMillis))
                } catch {
                    return .failure(error)
                }
            }
            switch opened {
            case .success(let o) where o.kind == .gossip:
                payload = o.payload
            case .failure(let rejection):
                logger.debug(
                    "dropped gossip datagram: \(rejection.code.rawValue)",
                    metadata: ["peer.address": .string("\(datagram.remoteAddress)")])
                return
            default:
                return
            }
        }
        guard let body = Self.unframe(payload, maxOutput: settings.maxPacketSize * 8),
            let message = try? SWIMCodec.decode(body)
        else {
            logger.debug(
                "undecodable gossip datagram", metadata: ["peer.address": .string("\(datagram.remoteAddress)")])
            return
        }
        if faults.isBlocked(message.from) { return }
        let from = Self.addressString(datagram.remoteAddress)
        let instant = ContinuousClock.now
        let directives = state.withLock { s in
            s.received += 1
            s.recent.append((instant, 1))
            s.lastSeen[message.from] = instant
            return s.instance.onMessage(message, fromAddress: from, now: now)
        }
        await perform(directives, outbound)
    }

    private func perform(
        _ directives: [SWIM.Directive], _ outbound: NIOAsyncChannelOutboundWriter<AddressedEnvelope<ByteBuffer>>
    ) async {
        for directive in directives {
            switch directive {
            case .send(let message, let address):
                if let target = targetName(of: message, address: address), faults.isBlocked(target) { continue }
                guard let remote = resolve(address) else { continue }
                let encoded = Self.frame(SWIMCodec.encode(message), compress: compression)
                let bytes = sealer.withLock { s -> [UInt8] in
                    guard var sealer = s else { return encoded }
                    defer { s = sealer }
                    return sealer.seal(kind: .gossip, payload: encoded, channel: .udp)
                }
                let instant = ContinuousClock.now
                state.withLock { s in
                    s.sent += 1
                    s.recent.append((instant, 1))
                }
                try? await outbound.write(AddressedEnvelope(remoteAddress: remote, data: ByteBuffer(bytes: bytes)))
            case .statusChanged(let member, let previous):
                let change = MemberChange(member: member, previous: previous)
                let subscribers = state.withLock { s -> [AsyncStream<MemberChange>.Continuation] in
                    let members = s.instance.members
                    let live = UInt64(members.lazy.filter { $0.status.isActive }.count)
                    let known = UInt64(members.lazy.filter { $0.status != .left }.count)
                    counts.store(max(1, live) << 32 | max(1, known), ordering: .relaxed)
                    activePeers.withLock { names in
                        names = members.filter { $0.status.isActive && $0.name != localName }.map(\.name)
                    }
                    return Array(s.subscribers.values)
                }
                for c in subscribers { c.yield(change) }
            }
        }
    }

    /// The member name behind a gossip address, for fault injection.
    private func targetName(of message: SWIM.Message, address: String) -> String? {
        state.withLock { s in s.instance.members.first { $0.gossipAddress == address }?.name }
    }

    private func resolve(_ address: String) -> SocketAddress? {
        if let cached = state.withLock({ $0.resolved[address] }) { return cached }
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) else {
            return nil
        }
        let host = String(address[..<colon]).trimmingCharacters(in: ["[", "]"])
        let resolved = try? SocketAddress.makeAddressResolvingHost(host, port: port)
        if let resolved { state.withLock { $0.resolved[address] = resolved } }
        return resolved
    }

    /// A gossip payload: one marker byte (0 = plain, 1 = LZ4 block), then the SWIM message.
    /// Compression is used only when it saves bytes; receivers accept both whatever their setting.
    static func frame(_ message: [UInt8], compress: Bool) -> [UInt8] {
        if compress {
            let packed = LZ4Block.compress(message)
            if packed.count + 1 < message.count + 1 { return [1] + packed }
        }
        return [0] + message
    }

    static func unframe(_ payload: [UInt8], maxOutput: Int) -> [UInt8]? {
        guard let marker = payload.first else { return nil }
        switch marker {
        case 0: return Array(payload.dropFirst())
        case 1: return try? LZ4Block.decompress(Array(payload.dropFirst()), maxOutput: maxOutput)
        default: return nil
        }
    }

    static func addressString(_ address: SocketAddress) -> String {
        guard let ip = address.ipAddress, let port = address.port else { return "\(address)" }
        return ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)"
    }
}
