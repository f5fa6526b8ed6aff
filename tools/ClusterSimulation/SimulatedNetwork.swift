import EventLog
import Replication

/// The network of a `ClusterSimulator` run: datagrams for SWIM, with every fault UDP allows,
/// and partitions that cut datagrams and sync connections alike.
///
/// Modelled on TigerBeetle's `packet_simulator.zig`: each datagram gets its own delay, so
/// datagrams overtake each other; by the seed's `Conditions` some are lost, some arrive twice,
/// and some are held back long enough to arrive well out of order. A partition blocks pairs
/// of nodes — all pairs across sides of a split, or a few links only — including datagrams
/// already in flight when it starts. Nothing here reads a clock or a global generator: time
/// and randomness come in as arguments.
struct SimulatedNetwork {
    /// How datagrams are treated. Chosen by the seed for the safety phase; `.calm` once healed.
    struct Conditions: Hashable, Sendable {
        /// Chance that a datagram is lost.
        var dropRate = 0.0
        /// Chance that a datagram is delivered twice (each copy with its own delay).
        var duplicateRate = 0.0
        /// Chance that a datagram is held back `reorderDelayMillis` on top of its delay.
        var reorderRate = 0.0
        /// Every message takes 1…`maxDelayMillis` ms (at least 1 ms: nothing is delivered in the
        /// tick that sent it).
        var maxDelayMillis: Int64 = 50
        var reorderDelayMillis: ClosedRange<Int64> = 50...250

        /// Delays only: nothing lost, duplicated or held back.
        static let calm = Conditions()
    }

    struct Datagram {
        var deliverAt: Duration
        /// Send order, to deliver datagrams due at the same time deterministically.
        var seq: UInt64
        var from: Int
        var to: Int
        var bytes: [UInt8]
    }

    /// What happened to one sent datagram.
    struct SendOutcome {
        var dropped = false
        var duplicated = false
    }

    var conditions: Conditions
    /// `blocked[a * n + b]`: a and b cannot reach each other (symmetric).
    private var blocked: [Bool]
    private let nodeCount: Int
    private(set) var inFlight: [Datagram] = []
    private var nextSeq: UInt64 = 0

    init(nodeCount: Int, conditions: Conditions) {
        self.conditions = conditions
        self.nodeCount = nodeCount
        self.blocked = Array(repeating: false, count: nodeCount * nodeCount)
    }

    var isPartitioned: Bool { blocked.contains(true) }

    func connects(_ a: Int, _ b: Int) -> Bool { !blocked[a * nodeCount + b] }

    /// Nodes on different sides cannot reach each other (a clean split).
    mutating func partition(into sides: [Int]) {
        precondition(sides.count == nodeCount, "partition of \(sides.count) nodes in a \(nodeCount)-node network")
        for a in 0..<nodeCount {
            for b in 0..<nodeCount { blocked[a * nodeCount + b] = sides[a] != sides[b] }
        }
    }

    /// Only these pairs cannot reach each other: everyone may still reach everyone through a
    /// third node (a non-transitive partition, where indirect probes and relaying matter).
    mutating func cut(_ links: [(Int, Int)]) {
        for (a, b) in links {
            blocked[a * nodeCount + b] = true
            blocked[b * nodeCount + a] = true
        }
    }

    mutating func heal() { blocked = Array(repeating: false, count: blocked.count) }

    /// A delay for one message: 1…`maxDelayMillis` ms.
    func delay(_ rng: inout SplitMix64) -> Duration {
        .milliseconds(Int64.random(in: 1...max(1, conditions.maxDelayMillis), using: &rng))
    }

    mutating func send(
        _ bytes: [UInt8], from: Int, to: Int, now: Duration, rng: inout SplitMix64
    ) -> SendOutcome {
        var outcome = SendOutcome()
        if rng.chance(conditions.dropRate) {
            outcome.dropped = true
            return outcome
        }
        let copies = rng.chance(conditions.duplicateRate) ? 2 : 1
        outcome.duplicated = copies == 2
        for _ in 0..<copies {
            var at = now + delay(&rng)
            if rng.chance(conditions.reorderRate) {
                at += .milliseconds(Int64.random(in: conditions.reorderDelayMillis, using: &rng))
            }
            nextSeq += 1
            inFlight.append(Datagram(deliverAt: at, seq: nextSeq, from: from, to: to, bytes: bytes))
        }
        return outcome
    }

    /// Removes and returns the datagrams due by `now`, in delivery order. The caller drops
    /// those whose ends are on different sides or whose receiver is down.
    mutating func takeDue(now: Duration) -> [Datagram] {
        guard inFlight.contains(where: { $0.deliverAt <= now }) else { return [] }
        let due = inFlight.filter { $0.deliverAt <= now }.sorted { ($0.deliverAt, $0.seq) < ($1.deliverAt, $1.seq) }
        inFlight.removeAll { $0.deliverAt <= now }
        return due
    }

    /// A crashed node's socket is gone: what was on its way to it is lost.
    mutating func discardDatagrams(to node: Int) -> Int {
        let before = inFlight.count
        inFlight.removeAll { $0.to == node }
        return before - inFlight.count
    }
}

/// One sync connection (TCP) between two nodes, carrying encoded `SyncMessage`s.
///
/// Reliable and in order in each direction while it lives (a message never overtakes an earlier
/// one on the same direction, whatever its own delay); when it drops, both `PeerSync` states and
/// everything in flight are discarded, like a reset TCP connection.
struct SimulatedConnection {
    /// Unique per run, so traces tell connections of the same pair apart.
    let id: UInt64
    /// Node indices, the smaller first.
    let ends: [Int]
    /// `syncs[side]` runs at `ends[side]`.
    var syncs: [PeerSync]
    private var inFlight: [Message] = []
    private var lastDeliverAt: [Duration] = [.zero, .zero]
    private var nextSeq: UInt64 = 0

    struct Message {
        var deliverAt: Duration
        var seq: UInt64
        /// The side it is delivered to.
        var toward: Int
        var bytes: [UInt8]
        var path: SyncPath
    }

    /// Why a message was sent, to tell where redundant event deliveries come from.
    enum SyncPath: Hashable {
        /// hello, ack, reconcile, fetch.
        case control
        /// `onLocalCommit`: live streaming of the sender's own events.
        case stream
        /// `nextCatchUpBatch`: watermark catch-up after hello.
        case catchUp
        /// `events` answering a reconciliation step or a fetch.
        case repair
    }

    init(id: UInt64, ends: [Int], syncs: [PeerSync]) {
        precondition(ends.count == 2 && syncs.count == 2, "a connection has two ends")
        self.id = id
        self.ends = ends
        self.syncs = syncs
    }

    func side(of node: Int) -> Int? { ends[0] == node ? 0 : ends[1] == node ? 1 : nil }

    var messagesInFlight: Int { inFlight.count }

    /// Queues `bytes` toward `side`, arriving after `delay` but never before an earlier message
    /// in the same direction.
    mutating func send(_ bytes: [UInt8], toward side: Int, now: Duration, delay: Duration, path: SyncPath) {
        let at = max(now + delay, lastDeliverAt[side])
        lastDeliverAt[side] = at
        nextSeq += 1
        inFlight.append(Message(deliverAt: at, seq: nextSeq, toward: side, bytes: bytes, path: path))
    }

    /// Removes and returns the messages due by `now`, in delivery order.
    mutating func takeDue(now: Duration) -> [Message] {
        guard inFlight.contains(where: { $0.deliverAt <= now }) else { return [] }
        let due = inFlight.filter { $0.deliverAt <= now }.sorted { ($0.deliverAt, $0.seq) < ($1.deliverAt, $1.seq) }
        inFlight.removeAll { $0.deliverAt <= now }
        return due
    }
}

extension SplitMix64 {
    /// True with probability `p` (never for p ≤ 0, always for p ≥ 1).
    mutating func chance(_ p: Double) -> Bool {
        guard p > 0 else { return false }
        return Double.random(in: 0..<1, using: &self) < p
    }
}
