import Crypto
import EventLog
import NIOCore

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// One sealed message of cluster traffic: a gossip datagram, or one frame of a TCP stream.
///
/// ```
///  0        1          5                 17
///  +--------+----------+-----------------+-------------------------------+
///  | ver=1  | key id   | nonce (12)      | ChaChaPoly ciphertext ‖ tag   |
///  +--------+----------+-----------------+-------------------------------+
///
///  plaintext = kind (1) ‖ sender node id (8, BE) ‖ boot (8, BE) ‖ counter (8, BE) ‖ payload
///  AAD       = the 5 header bytes ‖ channel label ("udp" / "tcp")
/// ```
///
/// ChaCha20-Poly1305 (RFC 8439) under the primary cluster key (`Keyring`) keeps traffic secret
/// and authentic. The header is authenticated too (AAD), so a changed version or key id fails
/// like a changed ciphertext; the channel label in the AAD makes a UDP datagram fail
/// authentication on TCP and vice versa. Sender, boot and counter are inside the ciphertext, so
/// an outsider cannot forge or even read them; the receiver's `ReplayWindow` accepts each
/// `(sender, boot, counter)` once.
///
/// Nonce: a 12-byte value drawn from the system CSPRNG once per `Sealer`, XORed with the
/// message counter in its last 8 bytes (the per-record nonce of TLS 1.3, RFC 8446 §5.3). Within
/// a sealer nonces are distinct by construction. Two sealers (other nodes and restarts, which
/// all share the cluster key) collide only if their random values differ in nothing but the low
/// counter bits: about 2^-60 per pair of sealers that each send 2^36 messages. The alternatives
/// are weaker: with 4 random bytes ‖ counter, two sealers whose 4 bytes match (2^-32 per pair)
/// reuse nonces from their first message on; with 12 fresh random bytes per message, the
/// birthday bound allows only about 2^32 messages per key cluster-wide (NIST SP 800-38D §8.3).
/// A repeated nonce under ChaCha20-Poly1305 reveals the XOR of two plaintexts and lets an
/// attacker forge messages (RFC 8439 §4).
public enum Envelope {
    public static let version: UInt8 = 1
    /// Version and key id, sent in clear.
    public static let headerByteCount = 5
    public static let nonceByteCount = 12
    public static let tagByteCount = 16
    /// Kind, sender, boot and counter at the start of the plaintext.
    public static let innerHeaderByteCount = 25
    /// What sealing adds to a payload: 5 + 12 + 16 + 25 = 58 bytes. Also the shortest envelope.
    public static let overheadByteCount = headerByteCount + nonceByteCount + tagByteCount + innerHeaderByteCount
}

/// The socket a message travels on. Its label is authenticated with every message, so bytes
/// captured on one are rejected on the other.
public enum TransportChannel: String, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    case udp
    case tcp

    var label: [UInt8] { Array(rawValue.utf8) }
    public var description: String { rawValue }
}

/// What a sealed message carries; decides the channel it may arrive on.
public enum EnvelopeKind: UInt8, Hashable, Sendable, CaseIterable {
    /// A SWIM gossip datagram.
    case gossip = 1
    /// One frame of an event stream.
    case streamFrame = 2
    /// The first frame of a stream connection.
    case hello = 3

    public var channel: TransportChannel {
        switch self {
        case .gossip: .udp
        case .streamFrame, .hello: .tcp
        }
    }
}

/// Seals this node's outgoing messages.
///
/// Shared by every connection of a channel (or of both): `(sender, boot, counter)` must never
/// repeat, so one counter serves all of them. Wrap it in a `Mutex` to share it across event
/// loops.
public struct Sealer: Sendable {
    /// The process start in Unix ms (taken at first use, which for a node is during startup):
    /// the default `boot`. Receivers refuse boots older than one they saw, so a node restarted
    /// with its clock set back is refused until its clock passes the old boot; start nodes with
    /// a synchronized clock.
    public static let processBootMillis: UInt64 = SystemWallClock().nowMillis()

    /// This node's id (`NodeID.rawValue`).
    public let sender: UInt64
    public let boot: UInt64
    /// Replace with the reloaded keys to rotate (`Keyring`); the counter carries on.
    public var keyring: Keyring
    /// Counter of the next message, from 0.
    public private(set) var nextCounter: UInt64 = 0
    public let stats: TransportStats
    private let nonceBase: [UInt8]

    public init(
        keyring: Keyring, sender: UInt64, boot: UInt64 = Sealer.processBootMillis,
        stats: TransportStats = TransportStats()
    ) {
        self.keyring = keyring
        self.sender = sender
        self.boot = boot
        self.stats = stats
        var rng = SystemRandomNumberGenerator()
        nonceBase = (0..<Envelope.nonceByteCount).map { _ in UInt8.random(in: .min ... .max, using: &rng) }
    }

    /// Seals one message for `channel` under the primary key.
    ///
    /// The receiver refuses a `kind` not carried on `channel` (`EnvelopeKind.channel`).
    public mutating func seal(
        kind: EnvelopeKind, payload: some Collection<UInt8>, channel: TransportChannel
    ) -> [UInt8] {
        let counter = nextCounter
        nextCounter += 1
        var plaintext: [UInt8] = []
        plaintext.reserveCapacity(Envelope.innerHeaderByteCount + payload.count)
        plaintext.append(kind.rawValue)
        plaintext.appendBigEndian(sender)
        plaintext.appendBigEndian(boot)
        plaintext.appendBigEndian(counter)
        plaintext.append(contentsOf: payload)

        let key = keyring.entries[0]
        var sealed: [UInt8] = [Envelope.version]
        sealed.reserveCapacity(Envelope.overheadByteCount + payload.count)
        sealed.appendBigEndian(key.id)
        var nonce = nonceBase
        withUnsafeBytes(of: counter.bigEndian) { counterBytes in
            for i in 0..<8 { nonce[4 + i] ^= counterBytes[i] }
        }
        // Cannot throw: the nonce has the required 12 bytes.
        let box = try! ChaChaPoly.seal(
            plaintext, using: key.key, nonce: ChaChaPoly.Nonce(data: nonce),
            authenticating: sealed + channel.label)
        sealed.append(contentsOf: box.combined)
        stats.recordSealed()
        return sealed
    }
}

/// Opens messages from other nodes: checks size, version, key, authenticity, channel, boot
/// and replay, in that order, and counts the outcome in `stats`.
///
/// Keep one per node for all connections: a TCP frame replayed into a new connection is caught
/// only if that connection checks against the same `ReplayWindow`. Wrap it in a `Mutex` to
/// share it across event loops.
public struct Opener: Sendable {
    public struct Settings: Sendable {
        /// Largest gossip datagram: the largest UDP payload over IPv4 (65,535 − 20 − 8).
        public var maxDatagramBytes: Int = 65_507
        /// Largest stream frame body; the same as the `FrameDecoder` default.
        public var maxFrameBytes: Int = FrameDecoder.defaultMaximumFrameLength
        /// A boot further than this ahead of the local clock is refused. Accepting it would make
        /// every later (correct-clock) boot of that node look stale (`ReplayWindow`) until real
        /// time caught up; 5 minutes is far beyond NTP-synchronized skew.
        public var maxBootSkewMillis: UInt64 = 300_000
        public var replayWindowSize: Int = ReplayWindow.defaultSize

        public init() {}

        public func maxBytes(on channel: TransportChannel) -> Int {
            switch channel {
            case .udp: maxDatagramBytes
            case .tcp: maxFrameBytes
            }
        }
    }

    /// An authentic message seen for the first time.
    public struct Opened: Hashable, Sendable {
        public var kind: EnvelopeKind
        public var sender: UInt64
        public var boot: UInt64
        public var counter: UInt64
        public var payload: [UInt8]
        /// Which of this node's keys opened it; 0 is the primary.
        public var keyIndex: Int

        public init(
            kind: EnvelopeKind, sender: UInt64, boot: UInt64, counter: UInt64, payload: [UInt8], keyIndex: Int
        ) {
            self.kind = kind
            self.sender = sender
            self.boot = boot
            self.counter = counter
            self.payload = payload
            self.keyIndex = keyIndex
        }
    }

    /// Replace with the reloaded keys to rotate (`Keyring`); replay state carries on.
    public var keyring: Keyring
    public let settings: Settings
    public let stats: TransportStats
    /// Separate per channel: each channel's counters come from the sealer that serves it.
    private var udpWindow: ReplayWindow
    private var tcpWindow: ReplayWindow

    public init(keyring: Keyring, settings: Settings = Settings(), stats: TransportStats = TransportStats()) {
        self.keyring = keyring
        self.settings = settings
        self.stats = stats
        udpWindow = ReplayWindow(size: settings.replayWindowSize)
        tcpWindow = ReplayWindow(size: settings.replayWindowSize)
    }

    /// What this opener accepted on `channel`, per sender (see `ReplayWindow.Mark`).
    public func replayMarks(_ channel: TransportChannel) -> [ReplayWindow.Mark] {
        channel == .udp ? udpWindow.marks : tcpWindow.marks
    }

    /// Restores marks saved before a restart, so what was accepted then stays refused.
    public mutating func restoreReplayMarks(_ marks: [ReplayWindow.Mark], channel: TransportChannel) {
        if channel == .udp { udpWindow.restore(marks) } else { tcpWindow.restore(marks) }
    }

    public mutating func open(
        _ buffer: ByteBuffer, channel: TransportChannel, nowMillis: UInt64
    ) throws(EnvelopeRejection) -> Opened {
        try open(Array(buffer.readableBytesView), channel: channel, nowMillis: nowMillis)
    }

    /// - Parameter nowMillis: local Unix time, to refuse boots from the future.
    public mutating func open(
        _ bytes: [UInt8], channel: TransportChannel, nowMillis: UInt64
    ) throws(EnvelopeRejection) -> Opened {
        do {
            let opened = try unseal(bytes, channel: channel, nowMillis: nowMillis)
            stats.recordOpened(withPrimaryKey: opened.keyIndex == 0)
            return opened
        } catch {
            stats.recordRejected(error.code)
            throw error
        }
    }

    private mutating func unseal(
        _ bytes: [UInt8], channel: TransportChannel, nowMillis: UInt64
    ) throws(EnvelopeRejection) -> Opened {
        func reject(_ context: EnvelopeRejection.Context) -> EnvelopeRejection {
            EnvelopeRejection(context, channel: channel, byteCount: bytes.count)
        }
        let limit = settings.maxBytes(on: channel)
        guard bytes.count <= limit else { throw reject(.oversized(limit: limit)) }
        guard let version = bytes.first else { throw reject(.truncated(minimum: Envelope.overheadByteCount)) }
        guard version == Envelope.version else { throw reject(.unsupportedVersion(version)) }
        guard bytes.count >= Envelope.overheadByteCount else {
            throw reject(.truncated(minimum: Envelope.overheadByteCount))
        }
        let keyID = bytes[1..<5].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        let candidates = keyring.entries.indices.filter { keyring.entries[$0].id == keyID }
        guard !candidates.isEmpty else { throw reject(.unknownKey(keyID: keyID)) }

        // Cannot throw: the length check above leaves room for nonce and tag.
        let box = try! ChaChaPoly.SealedBox(combined: bytes[Envelope.headerByteCount...])
        let aad = bytes[0..<Envelope.headerByteCount] + channel.label
        var opened: (plaintext: Data, keyIndex: Int)?
        for index in candidates {
            if let plaintext = try? ChaChaPoly.open(box, using: keyring.entries[index].key, authenticating: aad) {
                opened = (plaintext, index)
                break
            }
        }
        guard let (plaintext, keyIndex) = opened else { throw reject(.tampered(keyID: keyID)) }

        let inner = Array(plaintext)
        let rawKind = inner[0]
        let sender = UInt64(bigEndianBytes: inner[1..<9])
        let boot = UInt64(bigEndianBytes: inner[9..<17])
        let counter = UInt64(bigEndianBytes: inner[17..<25])
        guard let kind = EnvelopeKind(rawValue: rawKind), kind.channel == channel else {
            throw reject(.wrongChannel(kind: rawKind, sender: sender))
        }
        if boot > nowMillis, boot - nowMillis > settings.maxBootSkewMillis {
            throw reject(
                .bootInFuture(sender: sender, boot: boot, nowMillis: nowMillis, limitMillis: settings.maxBootSkewMillis)
            )
        }
        let verdict: ReplayWindow.Verdict
        switch channel {
        case .udp: verdict = udpWindow.admit(sender: sender, boot: boot, counter: counter)
        case .tcp: verdict = tcpWindow.admit(sender: sender, boot: boot, counter: counter)
        }
        guard verdict == .accepted else {
            throw reject(.replayed(sender: sender, boot: boot, counter: counter, verdict))
        }
        return Opened(
            kind: kind, sender: sender, boot: boot, counter: counter,
            payload: Array(inner[Envelope.innerHeaderByteCount...]), keyIndex: keyIndex)
    }
}

/// Why a received message was dropped, with what is known about it at that point. Says what
/// to do; hot-path cheap (the text is built only when `description` is read).
public struct EnvelopeRejection: Error, Hashable, Sendable, CustomStringConvertible {
    /// One per reason; `TransportStats` counts each. Raw values are metric labels.
    public enum Code: String, Hashable, Sendable, CaseIterable {
        case oversized
        case truncated
        case unsupportedVersion = "unsupported_version"
        case unknownKey = "unknown_key"
        /// Authentication failed: altered, forged, or captured on the other channel.
        case tampered
        /// Authentic, but its kind is unknown or not carried on this channel.
        case wrongChannel = "wrong_channel"
        case bootInFuture = "boot_in_future"
        case replayed
    }

    public enum Context: Hashable, Sendable {
        case oversized(limit: Int)
        case truncated(minimum: Int)
        case unsupportedVersion(UInt8)
        case unknownKey(keyID: UInt32)
        case tampered(keyID: UInt32)
        case wrongChannel(kind: UInt8, sender: UInt64)
        case bootInFuture(sender: UInt64, boot: UInt64, nowMillis: UInt64, limitMillis: UInt64)
        case replayed(sender: UInt64, boot: UInt64, counter: UInt64, ReplayWindow.Verdict)
    }

    public var context: Context
    public var channel: TransportChannel
    public var byteCount: Int

    public init(_ context: Context, channel: TransportChannel, byteCount: Int) {
        self.context = context
        self.channel = channel
        self.byteCount = byteCount
    }

    public var code: Code {
        switch context {
        case .oversized: .oversized
        case .truncated: .truncated
        case .unsupportedVersion: .unsupportedVersion
        case .unknownKey: .unknownKey
        case .tampered: .tampered
        case .wrongChannel: .wrongChannel
        case .bootInFuture: .bootInFuture
        case .replayed: .replayed
        }
    }

    /// The authenticated sender, once the message was opened.
    public var sender: UInt64? {
        switch context {
        case .wrongChannel(_, let sender), .bootInFuture(let sender, _, _, _), .replayed(let sender, _, _, _): sender
        default: nil
        }
    }

    public var description: String {
        let what = "dropped a \(byteCount)-byte \(channel) message"
        func node(_ id: UInt64) -> String { NodeID(rawValue: id).hex }
        switch context {
        case .oversized(let limit):
            return "\(what): over the \(limit)-byte limit; the sender is misconfigured or not a Bifrost node"
        case .truncated(let minimum):
            return "\(what): shorter than the \(minimum) bytes of an empty envelope; the sender is not a Bifrost node"
        case .unsupportedVersion(let version):
            return
                "\(what) of envelope version \(version) (this node speaks \(Envelope.version)): upgrade this node, or the sender is not a Bifrost node"
        case .unknownKey(let keyID):
            return
                "\(what) sealed with key \(Keyring.hex(keyID: keyID)), which this node does not have: give every node the same cluster keys (add a new key everywhere before any node makes it primary)"
        case .tampered(let keyID):
            return
                "\(what) that failed authentication under key \(Keyring.hex(keyID: keyID)): it was altered, forged, or captured on the other channel; look for a hostile host on the cluster network"
        case .wrongChannel(let kind, let sender):
            return
                "\(what) of kind \(kind) from node \(node(sender)), which \(channel) does not carry: the sender runs an incompatible version"
        case .bootInFuture(let sender, let boot, let now, let limit):
            return
                "\(what) from node \(node(sender)) whose boot is \(boot - now) ms ahead of this node's clock (limit \(limit) ms): synchronize the clocks of both nodes"
        case .replayed(let sender, let boot, let counter, let verdict):
            let from = "\(what) from node \(node(sender)), boot \(boot), counter \(counter)"
            switch verdict {
            case .staleBoot(let current):
                return
                    "\(from): boot \(current) of that node was seen already; a replay of an old run, or the node restarted with its clock behind (fix its clock)"
            case .belowWindow(let highest):
                return
                    "\(from): too far below counter \(highest) to tell from a replay; a replay, or a message delayed behind many newer ones"
            case .duplicate, .accepted:
                return "\(from): accepted before; a replay or a duplicated packet"
            }
        }
    }
}

extension Array where Element == UInt8 {
    fileprivate mutating func appendBigEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.bigEndian) { append(contentsOf: $0) }
    }
}

extension UInt64 {
    fileprivate init(bigEndianBytes bytes: ArraySlice<UInt8>) {
        self = bytes.reduce(0) { $0 << 8 | UInt64($1) }
    }
}
