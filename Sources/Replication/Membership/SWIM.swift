import EventLog

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// SWIM membership and failure detection with the Lifeguard extensions.
///
/// Das, Gupta & Motivala, "SWIM: Scalable Weakly-consistent Infection-style Process Group
/// Membership Protocol" (2002), and Dadgar, Phillips & Currey, "Lifeguard: Local Health
/// Awareness for More Accurate Failure Detection" (2018), as implemented by hashicorp/memberlist,
/// whose defaults (`DefaultLANConfig`) and formulas this follows. The state machine is
/// `SWIMInstance`: a pure value that takes time and randomness as inputs and answers with
/// `Directive`s; the NIO shell around it moves the bytes (`SWIMCodec`) and keeps the clock.
public enum SWIM {
    /// A member's own counter; only the member raises it, to refute a suspicion or to announce a
    /// new life after a restart. Ordering claims by it is what lets stale gossip lose (§4.2).
    public typealias Incarnation = UInt64

    /// The opaque health payload a member attaches to its own state (CPU, memory, queue depth…)
    /// is capped so that a member's state always fits a packet with room for others.
    public static let maxHealthBytes = 64

    /// Raw values are on the wire and match `EventLog.MemberState`.
    public enum Status: UInt8, CaseIterable, Hashable, Sendable, CustomStringConvertible {
        case alive = 0
        case suspect = 1
        case dead = 2
        /// Left gracefully: final for that incarnation, and never confused with a failure.
        case left = 3

        public var memberState: MemberState {
            switch self {
            case .alive: .alive
            case .suspect: .suspect
            case .dead: .dead
            case .left: .left
            }
        }

        public var description: String { memberState.name }

        /// Whether the member takes part in probing and gossip.
        public var isActive: Bool { self == .alive || self == .suspect }
    }

    /// One node as a member sees it.
    public struct Member: Hashable, Sendable {
        /// Unique and stable across restarts; identity in the cluster.
        public var name: String
        /// `host:port` of the SWIM (UDP) endpoint.
        public var gossipAddress: String
        /// `host:port` of the gateway API, for forwarding and `/cluster/nodes`.
        public var apiAddress: String
        public var status: Status
        public var incarnation: Incarnation
        /// The member's latest health payload as it announced it (empty when unknown).
        public var health: [UInt8]

        public init(
            name: String, gossipAddress: String, apiAddress: String, status: Status = .alive,
            incarnation: Incarnation = 0, health: [UInt8] = []
        ) {
            self.name = name
            self.gossipAddress = gossipAddress
            self.apiAddress = apiAddress
            self.status = status
            self.incarnation = incarnation
            self.health = health
        }
    }

    /// A claim about one member, piggybacked on protocol messages (the SWIM paper's
    /// "infection-style dissemination", §4.1).
    public struct Update: Hashable, Sendable {
        public var name: String
        public var gossipAddress: String
        public var apiAddress: String
        public var status: Status
        public var incarnation: Incarnation
        /// Who made the claim: the member itself for `alive` and `left`, the suspecting or
        /// declaring member for `suspect` and `dead`. Suspicion confirmations count distinct
        /// observers, so a relayed claim is never mistaken for an independent one (Lifeguard, Local Health Aware Suspicion).
        public var observer: String
        /// At most `SWIM.maxHealthBytes`.
        public var health: [UInt8]

        public init(
            name: String, gossipAddress: String, apiAddress: String, status: Status, incarnation: Incarnation,
            observer: String, health: [UInt8] = []
        ) {
            self.name = name
            self.gossipAddress = gossipAddress
            self.apiAddress = apiAddress
            self.status = status
            self.incarnation = incarnation
            self.observer = observer
            self.health = health
        }

        public init(_ member: Member, observer: String) {
            self.init(
                name: member.name, gossipAddress: member.gossipAddress, apiAddress: member.apiAddress,
                status: member.status, incarnation: member.incarnation, observer: observer, health: member.health)
        }
    }

    /// The protocol's datagrams. `from` is the sender's member name; the sender's address is the
    /// transport's. Every message carries the sender's own state first, then gossip.
    public enum Message: Hashable, Sendable {
        /// A direct probe; answered with an `ack` of the same `seq`.
        case ping(seq: UInt64, from: String, updates: [Update])
        /// The answer to a `ping`, or a helper relaying the target's answer to a `pingRequest`.
        case ack(seq: UInt64, from: String, updates: [Update])
        /// Asks the receiver to probe `target` on the sender's behalf (indirect probe, §3.1).
        case pingRequest(seq: UInt64, from: String, target: String, targetAddress: String, updates: [Update])
        /// A helper saying the target did not answer its probe in time. Missing nacks tell the
        /// requester that it, not the target, may be the slow one (Lifeguard, Local Health Aware Probe).
        case nack(seq: UInt64, from: String, updates: [Update])

        public var seq: UInt64 {
            switch self {
            case .ping(let seq, _, _), .ack(let seq, _, _), .pingRequest(let seq, _, _, _, _), .nack(let seq, _, _):
                seq
            }
        }

        public var from: String {
            switch self {
            case .ping(_, let from, _), .ack(_, let from, _), .pingRequest(_, let from, _, _, _),
                .nack(_, let from, _):
                from
            }
        }

        public var updates: [Update] {
            switch self {
            case .ping(_, _, let u), .ack(_, _, let u), .pingRequest(_, _, _, _, let u), .nack(_, _, let u): u
            }
        }
    }

    /// What the shell must do after an input.
    public enum Directive: Hashable, Sendable {
        /// Encode with `SWIMCodec` and send as one datagram.
        case send(Message, toAddress: String)
        /// A member's status changed in this node's view, including its first sighting
        /// (`previous == nil`) and the local node's own join and leave; the shell records a
        /// `membership.changed` event with this node as observer.
        case statusChanged(member: Member, previous: Status?)
    }

    /// Tuning, with memberlist's `DefaultLANConfig` values as defaults.
    public struct Settings: Hashable, Sendable {
        /// Time between probe rounds of a healthy node; scaled by the local health multiplier.
        public var probeInterval: Duration = .seconds(1)
        /// How long a direct ping waits for its ack before indirect probes go out; scaled by the
        /// local health multiplier. Must be shorter than `probeInterval`.
        public var probeTimeout: Duration = .milliseconds(500)
        /// How many members are asked to probe a target that missed its direct ping (SWIM's k).
        public var indirectChecks = 3
        /// How long a helper waits for the target before it sends a nack. Memberlist waits the full
        /// probe timeout, which lands the nack at the very end of the asker's round (indirect probes
        /// go out at `probeTimeout`, the round ends at `probeInterval` = 2 × that); 80% of it leaves
        /// the nack 100 ms to travel.
        public var indirectProbeTimeout: Duration = .milliseconds(400)
        /// Consecutive failed probe rounds (each including the indirect probes), or reports from
        /// `onPeerUnreachable`, after which this node suspects a member.
        public var detectionThreshold = 1
        /// Minimum suspicion timeout = this × max(1, log10(N)) × `probeInterval`.
        public var suspicionMultiplier = 4
        /// Maximum suspicion timeout = this × the minimum; confirmations move it toward the minimum.
        public var suspicionMaxTimeoutMultiplier = 6
        /// Each update is piggybacked at most this × ceil(log10(N + 1)) times.
        public var retransmitMultiplier = 4
        /// The local health score stays in `0..<awarenessMaxMultiplier`; timeouts scale by score + 1.
        public var awarenessMaxMultiplier = 8
        /// No encoded message exceeds this many bytes (a 1500-byte Ethernet MTU less IP, UDP and
        /// sealing overhead), unless the sender's own state alone is larger, which it always carries.
        public var maxPacketSize = 1400
        /// A member not heard from (any message) for this long is probed before the round robin;
        /// `nil` turns the rule off.
        public var gossipSilenceTimeout: Duration? = nil
        /// How often one random dead member is pinged in case it is back, which heals a partition
        /// whose sides declared each other dead (serf's `ReconnectInterval`); `nil` turns it off.
        public var reconnectInterval: Duration? = .seconds(30)

        public init() {}

        /// Memberlist's `suspicionTimeout`: the node-count scale is truncated to thousandths, as
        /// memberlist does, so the numbers match it exactly.
        public func minSuspicionTimeout(memberCount n: Int) -> Duration {
            let nodeScale = Swift.max(1.0, log10(Double(Swift.max(1, n))))
            return probeInterval * suspicionMultiplier * Int(nodeScale * 1000) / 1000
        }

        public func maxSuspicionTimeout(memberCount n: Int) -> Duration {
            minSuspicionTimeout(memberCount: n) * suspicionMaxTimeoutMultiplier
        }

        /// Independent confirmations that drive the suspicion timeout to its minimum: the
        /// multiplier less 2, so the nominal timeout is reached two probe intervals early; 0 when
        /// the cluster is too small to produce that many (memberlist `suspectNode`).
        public func expectedConfirmations(memberCount n: Int) -> Int {
            let k = suspicionMultiplier - 2
            return n - 2 < k ? 0 : Swift.max(0, k)
        }

        /// Lifeguard's dynamic suspicion timeout after `confirmations` independent suspicions:
        /// `max − (max − min) · log(c + 1) / log(k + 1)`, floored to whole milliseconds and at
        /// `min` (memberlist `remainingSuspicionTime`). With no expected confirmations it is `min`.
        public func suspicionTimeout(memberCount n: Int, confirmations c: Int) -> Duration {
            Self.suspicionTimeout(
                min: minSuspicionTimeout(memberCount: n), max: maxSuspicionTimeout(memberCount: n),
                expected: expectedConfirmations(memberCount: n), confirmations: c)
        }

        /// The formula with bounds fixed when a suspicion starts, as memberlist fixes them per timer.
        static func suspicionTimeout(
            min lower: Duration, max upper: Duration, expected k: Int, confirmations c: Int
        )
            -> Duration
        {
            guard k >= 1 else { return lower }
            let fraction = log(Double(Swift.max(0, c)) + 1) / log(Double(k) + 1)
            let raw = upper.seconds - fraction * (upper.seconds - lower.seconds)
            return Swift.max(.milliseconds(Int64((raw * 1000).rounded(.down))), lower)
        }

        /// Memberlist `retransmitLimit`.
        public func retransmitLimit(memberCount n: Int) -> Int {
            retransmitMultiplier * Int(log10(Double(Swift.max(0, n) + 1)).rounded(.up))
        }
    }
}

extension Duration {
    fileprivate var seconds: Double {
        let (s, attoseconds) = components
        return Double(s) + Double(attoseconds) / 1e18
    }
}
