import EventLog
import Logging
import NIOCore
import Synchronization

// MARK: - Framing

/// Turns sync messages into TCP frame bodies and back: one `Envelope` per frame.
///
/// With a keyring, a body is a sealed envelope (`Sealer`/`Opener`; channel `tcp`). Without one
/// (an unencrypted cluster, allowed explicitly by configuration), a body is the envelope's
/// plaintext carried in clear, with the same layout and the same checks except authenticity
/// and replay:
///
/// ```
///  0      1                 9            17              25
///  +------+-----------------+------------+---------------+----------------------+
///  | kind | sender (8, BE)  | boot (8)   | counter (8)   | SyncCodec message    |
///  +------+-----------------+------------+---------------+----------------------+
/// ```
///
/// A clear body starts with its kind (2 or 3), a sealed one with the envelope version (1), so a
/// node with keys and one without refuse each other's frames (`wrong_channel` on the clear
/// side, `unsupported_version` on the sealed side) instead of misreading them.
final class StreamFraming: Sendable {
    let sender: UInt64
    let boot: UInt64
    let stats: TransportStats
    let maxFrameBytes: Int
    let isEncrypted: Bool
    /// Nil without a keyring (as is `opener`).
    private let sealer: Mutex<Sealer?>
    /// One per service: a frame replayed into another connection is caught by the same window.
    private let opener: Mutex<Opener?>
    private let clearCounter = Mutex<UInt64>(0)

    init(keyring: Keyring?, sender: UInt64, boot: UInt64, stats: TransportStats) {
        self.sender = sender
        self.boot = boot
        self.stats = stats
        let settings = Opener.Settings()
        maxFrameBytes = settings.maxFrameBytes
        isEncrypted = keyring != nil
        sealer = Mutex(keyring.map { Sealer(keyring: $0, sender: sender, boot: boot, stats: stats) })
        opener = Mutex(keyring.map { Opener(keyring: $0, settings: settings, stats: stats) })
    }

    /// Bytes a body adds to its payload.
    var overheadByteCount: Int { isEncrypted ? Envelope.overheadByteCount : Envelope.innerHeaderByteCount }

    func seal(kind: EnvelopeKind, payload: [UInt8]) -> [UInt8] {
        if isEncrypted {
            return sealer.withLock { $0!.seal(kind: kind, payload: payload, channel: .tcp) }
        }
        let counter = clearCounter.withLock { counter in
            defer { counter += 1 }
            return counter
        }
        var body: [UInt8] = [kind.rawValue]
        body.reserveCapacity(Envelope.innerHeaderByteCount + payload.count)
        body.appendBigEndian(sender)
        body.appendBigEndian(boot)
        body.appendBigEndian(counter)
        body.append(contentsOf: payload)
        stats.recordSealed()
        return body
    }

    func open(_ buffer: ByteBuffer, nowMillis: UInt64) throws(EnvelopeRejection) -> Opener.Opened {
        let bytes = Array(buffer.readableBytesView)
        if isEncrypted {
            return try opener.withLock { (opener: inout Opener?) throws(EnvelopeRejection) -> Opener.Opened in
                try opener!.open(bytes, channel: .tcp, nowMillis: nowMillis)
            }
        }
        do {
            let opened = try Self.openClear(bytes, maxFrameBytes: maxFrameBytes)
            stats.recordOpened(withPrimaryKey: true)
            return opened
        } catch {
            stats.recordRejected(error.code)
            throw error
        }
    }

    private static func openClear(_ bytes: [UInt8], maxFrameBytes: Int) throws(EnvelopeRejection) -> Opener.Opened {
        func reject(_ context: EnvelopeRejection.Context) -> EnvelopeRejection {
            EnvelopeRejection(context, channel: .tcp, byteCount: bytes.count)
        }
        guard bytes.count <= maxFrameBytes else { throw reject(.oversized(limit: maxFrameBytes)) }
        guard bytes.count >= Envelope.innerHeaderByteCount else {
            throw reject(.truncated(minimum: Envelope.innerHeaderByteCount))
        }
        let sender = UInt64(bigEndianBytes: bytes[1..<9])
        guard let kind = EnvelopeKind(rawValue: bytes[0]), kind.channel == .tcp else {
            throw reject(.wrongChannel(kind: bytes[0], sender: sender))
        }
        return Opener.Opened(
            kind: kind, sender: sender, boot: UInt64(bigEndianBytes: bytes[9..<17]),
            counter: UInt64(bigEndianBytes: bytes[17..<25]),
            payload: Array(bytes[Envelope.innerHeaderByteCount...]), keyIndex: 0)
    }
}

extension Array where Element == UInt8 {
    fileprivate mutating func appendBigEndian(_ value: UInt64) {
        Swift.withUnsafeBytes(of: value.bigEndian) { append(contentsOf: $0) }
    }
}

extension UInt64 {
    fileprivate init(bigEndianBytes bytes: ArraySlice<UInt8>) {
        self = bytes.reduce(0) { $0 << 8 | UInt64($1) }
    }
}

// MARK: - Mailbox

/// Everything one connection's sync task reacts to, in one queue: inbound frames, local
/// commits, ticks. A single consumer takes them in order, so all `PeerSync` calls of a
/// connection are serialized.
///
/// Bounded: the socket reader waits while more than `maxInboundBytes` of frames are queued (so
/// NIO stops reading and TCP pushes back on the peer), and the commit forwarder waits while
/// `maxCommitBatches` batches are queued (so the store's commit feed buffers, and ends the
/// subscription of a connection that falls too far behind). A tick is a flag, never queued
/// twice, and is taken before queued items so a busy connection still reconciles.
final class ConnectionMailbox: Sendable {
    enum Item: Sendable {
        case frame(ByteBuffer)
        case commits([CommittedEvent])
        /// The socket's inbound side ended (nil: the peer closed), or framing failed.
        case inboundEnded((any Error)?)
        /// The commit subscription ended: the store closed, or this connection lagged.
        case commitsEnded
    }

    enum Next: Sendable {
        case item(Item)
        case tick
        case closed
        case empty
    }

    static let maxInboundBytes = 8 << 20
    static let maxCommitBatches = 32

    private enum Lane {
        case inbound, commits, control
    }

    private struct State {
        var items = CircularBuffer<Item>()
        var inboundBytes = 0
        var commitBatches = 0
        var tickDue = false
        var closed = false
        var consumer: CheckedContinuation<Void, Never>?
        var producers: [(lane: Lane, continuation: CheckedContinuation<Void, Never>)] = []

        func isFull(_ lane: Lane) -> Bool {
            switch lane {
            case .inbound: inboundBytes > ConnectionMailbox.maxInboundBytes
            case .commits: commitBatches >= ConnectionMailbox.maxCommitBatches
            case .control: false
            }
        }

        mutating func account(_ item: Item, _ sign: Int) {
            switch item {
            case .frame(let buffer): inboundBytes += sign * buffer.readableBytes
            case .commits: commitBatches += sign
            case .inboundEnded, .commitsEnded: break
            }
        }
    }

    private let state = Mutex(State())

    private static func lane(of item: Item) -> Lane {
        switch item {
        case .frame: .inbound
        case .commits: .commits
        case .inboundEnded, .commitsEnded: .control
        }
    }

    var isClosed: Bool { state.withLock { $0.closed } }

    /// Queues `item`, then waits while its lane is full. False once the mailbox is closed.
    func push(_ item: Item) async -> Bool {
        let lane = Self.lane(of: item)
        let (accepted, consumer, full) = state.withLock {
            s -> (Bool, CheckedContinuation<Void, Never>?, Bool) in
            guard !s.closed else { return (false, nil, false) }
            s.items.append(item)
            s.account(item, 1)
            defer { s.consumer = nil }
            return (true, s.consumer, s.isFull(lane))
        }
        consumer?.resume()
        guard accepted else { return false }
        if full {
            await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let now = state.withLock { s in
                        guard !s.closed, s.isFull(lane) else { return true }
                        s.producers.append((lane, continuation))
                        return false
                    }
                    if now { continuation.resume() }
                }
            } onCancel: {
                close()
            }
        }
        return !isClosed
    }

    /// The next thing to do, without waiting.
    func take() -> Next {
        let (next, wake) = state.withLock { s -> (Next, [CheckedContinuation<Void, Never>]) in
            if s.closed { return (.closed, []) }
            if s.tickDue {
                s.tickDue = false
                return (.tick, [])
            }
            guard let item = s.items.popFirst() else { return (.empty, []) }
            s.account(item, -1)
            guard !s.producers.isEmpty else { return (.item(item), []) }
            let producers = s.producers
            s.producers = producers.filter { s.isFull($0.lane) }
            return (.item(item), producers.filter { !s.isFull($0.lane) }.map(\.continuation))
        }
        for continuation in wake { continuation.resume() }
        return next
    }

    /// Returns once `take` has something (or the mailbox closed, or the task was cancelled).
    func waitForWork() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { s in
                    guard !s.closed, s.items.isEmpty, !s.tickDue else { return true }
                    s.consumer = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            close()
        }
    }

    func tick() {
        let consumer = state.withLock { s -> CheckedContinuation<Void, Never>? in
            guard !s.closed else { return nil }
            s.tickDue = true
            defer { s.consumer = nil }
            return s.consumer
        }
        consumer?.resume()
    }

    /// Drops what is queued and releases every waiter; `take` answers `.closed` from now on.
    func close() {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.closed = true
            s.items.removeAll()
            s.inboundBytes = 0
            s.commitBatches = 0
            var waiters = s.producers.map(\.continuation)
            if let consumer = s.consumer { waiters.append(consumer) }
            s.consumer = nil
            s.producers = []
            return waiters
        }
        for continuation in waiters { continuation.resume() }
    }
}

/// What the service keeps of a live connection to close it from outside its task.
final class ConnectionHandle: Sendable {
    let id: UInt64
    let channel: any Channel
    let mailbox: ConnectionMailbox

    init(id: UInt64, channel: any Channel, mailbox: ConnectionMailbox) {
        self.id = id
        self.channel = channel
        self.mailbox = mailbox
    }

    func close() {
        mailbox.close()
        channel.close(promise: nil)
    }
}

// MARK: - Connection

/// Why a connection ended; `description` goes to the disconnect log line.
enum CloseReason: Sendable, CustomStringConvertible {
    case peerClosed
    case inboundFailed(any Error)
    case closedLocally
    case blocked
    case rejectedFrame(EnvelopeRejection)
    case protocolViolation(String)
    case handshakeTimeout
    case commitFeedEnded
    case failed(any Error)
    /// The TLS handshake failed, or the peer refused this node's certificate (`cluster.tls`).
    case tlsHandshakeFailed(any Error)

    var description: String {
        switch self {
        case .peerClosed: "peer closed the connection"
        case .inboundFailed(let error): "read failed: \(error)"
        case .closedLocally: "closed by this node"
        case .blocked: "peer is blocked by the fault injector"
        case .rejectedFrame(let rejection): rejection.description
        case .protocolViolation(let what): "protocol violation: \(what)"
        case .handshakeTimeout: "no hello within \(SyncService.handshakeTimeout)"
        case .commitFeedEnded:
            "local commit feed ended (store closed, or this connection fell behind; the peer catches up on reconnect)"
        case .failed(let error): "\(error)"
        case .tlsHandshakeFailed(let error): "TLS handshake failed: \(error)"
        }
    }

    /// Reasons worth a warning: the peer (or whoever connected) misbehaved, or this node
    /// failed (its store), rather than the network or a shutdown ending the connection.
    var isWarning: Bool {
        switch self {
        case .rejectedFrame, .protocolViolation, .handshakeTimeout, .tlsHandshakeFailed: true
        case .inboundFailed(let error): error is FrameError
        case .failed(let error): !Self.isConnectionLoss(error)
        case .peerClosed, .closedLocally, .blocked, .commitFeedEnded: false
        }
    }

    var isTLSHandshakeFailure: Bool {
        if case .tlsHandshakeFailed = self { return true }
        return false
    }

    /// The connection ended by the peer or the network (closed, reset, a read or write failed),
    /// not by a decision of this node.
    var isPeerOrNetwork: Bool {
        switch self {
        case .peerClosed, .inboundFailed, .failed: true
        case .closedLocally, .blocked, .rejectedFrame, .protocolViolation, .handshakeTimeout, .commitFeedEnded,
            .tlsHandshakeFailed:
            false
        }
    }

    /// The socket went away under a read or write (reset, closed, shutting down).
    private static func isConnectionLoss(_ error: any Error) -> Bool {
        error is IOError || error is ChannelError || error is NIOAsyncWriterError || error is CancellationError
    }

    /// For `sync.rejection` metadata: the rejection code of a refused frame.
    var rejectionCode: String? {
        if case .rejectedFrame(let rejection) = self { return rejection.code.rawValue }
        return nil
    }
}

/// The sync task of one connection: owns its `PeerSync` and performs its outputs. Runs in the
/// single task that consumes the connection's mailbox.
struct SyncConnection {
    let service: SyncService
    let id: UInt64
    let mailbox: ConnectionMailbox
    let address: String
    /// The node dialed (nil for an accepted connection until its hello arrives).
    let dialed: String?
    var sync: PeerSync
    /// The authenticated peer, once its hello was accepted.
    private(set) var peer: String?
    private var peerID: UInt64 = 0
    /// The peer's own-origin watermark in its hello: its events above it were committed after
    /// the connection opened, so they arrive by streaming (propagation samples).
    private var streamedAbove = HLCTimestamp.max
    private let openedAt = ContinuousClock.now
    private(set) var establishedAt: ContinuousClock.Instant?

    init(service: SyncService, id: UInt64, mailbox: ConnectionMailbox, address: String, dialed: String?) {
        self.service = service
        self.id = id
        self.mailbox = mailbox
        self.address = address
        self.dialed = dialed
        self.sync = PeerSync(localNode: service.localNode, settings: service.settings)
    }

    private var store: EventStore { service.store }

    private var logger: Logger {
        var logger = service.logger
        logger[metadataKey: "peer.address"] = "\(address)"
        if let name = peer ?? dialed { logger[metadataKey: "peer.id"] = "\(name)" }
        return logger
    }

    /// Runs until the connection should close; never throws.
    mutating func run(_ outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>) async -> CloseReason {
        do {
            try await perform(try sync.start(store.reader), outbound)
            while true {
                if let peer, service.faults.isBlocked(peer) { return .blocked }
                let reason: CloseReason?
                switch mailbox.take() {
                case .closed:
                    return .closedLocally
                case .tick:
                    reason = try await onTick(outbound)
                case .item(let item):
                    reason = try await onItem(item, outbound)
                case .empty:
                    if peer != nil, sync.isCatchingUp {
                        // Catch-up yields to inbound traffic between batches, so two nodes
                        // catching each other up keep reading and cannot both stall on writes.
                        if let batch = try sync.nextCatchUpBatch(store.reader) { try await send(batch, outbound) }
                    } else {
                        await mailbox.waitForWork()
                    }
                    reason = nil
                }
                service.publish(id, counters: sync.counters, watermarks: sync.peerWatermarks)
                if let reason { return reason }
            }
        } catch {
            return .failed(error)
        }
    }

    private mutating func onTick(_ outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>) async throws -> CloseReason? {
        guard peer != nil else {
            return ContinuousClock.now - openedAt > SyncService.handshakeTimeout ? .handshakeTimeout : nil
        }
        try await perform(try sync.onTick(store.reader, now: service.now(), nowMillis: service.wallMillis()), outbound)
        return nil
    }

    private mutating func onItem(
        _ item: ConnectionMailbox.Item, _ outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    ) async throws -> CloseReason? {
        switch item {
        case .frame(let buffer):
            return try await onFrame(buffer, outbound)
        case .commits(let batch):
            // Before the peer's hello, catch-up (computed from its watermarks) covers these.
            guard peer != nil else { return nil }
            try await perform(sync.onLocalCommit(batch), outbound)
            return nil
        case .inboundEnded(let error):
            return error.map { .inboundFailed($0) } ?? .peerClosed
        case .commitsEnded:
            return .commitFeedEnded
        }
    }

    private mutating func onFrame(
        _ buffer: ByteBuffer, _ outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    ) async throws -> CloseReason? {
        let opened: Opener.Opened
        do {
            opened = try service.framing.open(buffer, nowMillis: service.wallMillis())
        } catch {
            return .rejectedFrame(error)
        }
        let message: SyncMessage
        do {
            message = try SyncCodec.decode(opened.payload)
        } catch {
            service.countProtocolError()
            return .protocolViolation("undecodable \(opened.kind) frame: \(error)")
        }
        guard let peer else {
            return try await onHello(opened, message, outbound)
        }
        guard opened.kind == .streamFrame, opened.sender == peerID else {
            service.countProtocolError()
            return .protocolViolation(
                "\(opened.kind) frame from node \(NodeID(rawValue: opened.sender).hex) on the stream of \(peer)")
        }
        if case .hello = message {
            service.countProtocolError()
            return .protocolViolation("second hello")
        }
        try await perform(
            try sync.onMessage(message, store.reader, now: service.now(), nowMillis: service.wallMillis()), outbound)
        return nil
    }

    private mutating func onHello(
        _ opened: Opener.Opened, _ message: SyncMessage, _ outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    ) async throws -> CloseReason? {
        guard opened.kind == .hello, case .hello(let node, let watermarks) = message else {
            service.countProtocolError()
            return .protocolViolation("first frame is a \(opened.kind) frame, not hello")
        }
        let localNode = service.localNode
        let violation: String? =
            if NodeID(name: node).rawValue != opened.sender {
                "hello names \(node) but was sent by node \(NodeID(rawValue: opened.sender).hex)"
            } else if node == localNode {
                "peer claims this node's own name"
            } else if let dialed, node != dialed {
                "dialed \(dialed) but \(node) answered; check the addresses membership reports"
            } else if dialed == nil, node > localNode {
                "\(node) dialed \(localNode), but the node with the smaller name dials"
            } else {
                nil
            }
        if let violation {
            service.countProtocolError()
            return .protocolViolation(violation)
        }
        if service.faults.isBlocked(node) { return .blocked }
        peer = node
        peerID = opened.sender
        streamedAbove = watermarks[NodeID(name: node)] ?? .zero
        establishedAt = .now
        service.established(id, peer: node)
        logger.info(
            "sync connected",
            metadata: [
                "sync.direction": "\(dialed == nil ? "accepted" : "dialed")",
                "sync.encrypted": "\(service.framing.isEncrypted)", "sync.tls": "\(service.tls != nil)",
            ])
        try await perform(
            try sync.onMessage(message, store.reader, now: service.now(), nowMillis: service.wallMillis()), outbound)
        return nil
    }

    private mutating func perform(
        _ outputs: [PeerSync.Output], _ outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    ) async throws {
        for output in outputs {
            switch output {
            case .send(let message):
                try await send(message, outbound)
            case .insert(let events):
                let outcomes = try await store.insert(encoded: events)
                recordPropagation(events, outcomes)
                for case .send(let ack) in try sync.inserted(into: store.reader) { try await send(ack, outbound) }
            }
        }
    }

    /// Samples `now - HLC wall time` of the new events the peer originated after the
    /// connection opened: those came by streaming. Catch-up and repair move older events, whose
    /// age says nothing about propagation.
    private func recordPropagation(_ events: [[UInt8]], _ outcomes: [InsertOutcome]) {
        let now = Int64(clamping: service.wallMillis())
        var samples: [Int64] = []
        for (bytes, outcome) in zip(events, outcomes) where outcome == .inserted {
            guard let (id, _) = try? bytes.withUnsafeBytes({ try EventCodec.peekHeader($0) }),
                id.origin.rawValue == peerID, id.hlc > streamedAbove
            else { continue }
            samples.append(now - Int64(clamping: id.hlc.wallMillis))
        }
        if !samples.isEmpty { service.recordPropagation(samples) }
    }

    private func send(_ message: SyncMessage, _ outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>) async throws {
        let kind: EnvelopeKind
        if case .hello = message { kind = .hello } else { kind = .streamFrame }
        for payload in payloads(message) {
            let body = service.framing.seal(kind: kind, payload: payload)
            try await outbound.write(ByteBuffer(bytes: body))
        }
    }

    /// The encoded message, or an `events` message split in halves until each part fits a frame
    /// (batches are capped by count; a few large events could otherwise exceed the frame limit).
    private func payloads(_ message: SyncMessage) -> [[UInt8]] {
        let encoded = SyncCodec.encode(message)
        guard encoded.count + service.framing.overheadByteCount > service.framing.maxFrameBytes,
            case .events(let events) = message, events.count > 1
        else { return [encoded] }
        let half = events.count / 2
        return payloads(.events(Array(events[..<half]))) + payloads(.events(Array(events[half...])))
    }
}

// MARK: - Dialing

/// A connected or accepted socket, its pipeline built (`SyncService.wrap`).
struct SyncSocket: Sendable {
    /// Frame bodies in and out.
    let stream: NIOAsyncChannel<ByteBuffer, ByteBuffer>
    /// With TLS: succeeds when the handshake completes, fails with its error (or when the
    /// channel closes first). Nil for plain TCP.
    let tlsHandshake: EventLoopFuture<Void>?
}

/// A connect that returns as soon as its task is cancelled (NIO's connect runs to its timeout);
/// a channel that connects after that is closed.
final class PendingConnect: Sendable {
    typealias Connected = SyncSocket

    private enum State {
        case idle
        case waiting(CheckedContinuation<Connected, any Error>)
        case finished
    }

    private let state = Mutex(State.idle)

    func run(_ connect: @escaping @Sendable () async throws -> Connected) async throws -> Connected {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Connected, any Error>) in
                let installed = state.withLock { s in
                    guard case .idle = s else { return false }
                    s = .waiting(continuation)
                    return true
                }
                guard installed else {
                    continuation.resume(throwing: CancellationError())
                    return
                }
                Task {
                    do {
                        let channel = try await connect()
                        if !self.finish(.success(channel)) { try? await channel.stream.channel.close() }
                    } catch {
                        self.finish(.failure(error))
                    }
                }
            }
        } onCancel: {
            finish(.failure(CancellationError()))
        }
    }

    @discardableResult
    private func finish(_ result: Result<Connected, any Error>) -> Bool {
        let continuation = state.withLock { s -> CheckedContinuation<Connected, any Error>? in
            defer { s = .finished }
            if case .waiting(let continuation) = s { return continuation }
            return nil
        }
        continuation?.resume(with: result)
        return continuation != nil
    }
}
