import EventLog

/// One node's SWIM state machine (`SWIM`): membership view, probe rounds, suspicion timers,
/// local health, and the gossip queue.
///
/// Pure: every input carries `now`, a monotonic `Duration` since an arbitrary origin, and all
/// randomness comes from the injected generator, so a seed replays a run exactly. Outputs are
/// `SWIM.Directive`s for the shell. The shape follows apple/swift-cluster-membership's
/// `SWIM.Instance`; the rules follow hashicorp/memberlist (`state.go`, `suspicion.go`,
/// `awareness.go`).
///
/// Probing (SWIM §3, §4.3). Each round, whose length is `probeInterval` × (local health + 1),
/// pings one member: alive members that failed a round or have been silent for
/// `gossipSilenceTimeout` first, otherwise the next in a shuffled round robin (reshuffled
/// after every full pass; new members are inserted at a random later position), which bounds
/// the time to first probe of a failed member. Without an ack by the scaled `probeTimeout`,
/// `indirectChecks` random alive members are asked to probe it; each answers with the target's
/// ack or, after `indirectProbeTimeout`, a nack. A round that ends without any ack is a failed
/// round; `detectionThreshold` consecutive failed rounds (or `onPeerUnreachable` reports) make
/// this node suspect the member.
///
/// Lifeguard. Local health (memberlist "awareness", `0..<awarenessMaxMultiplier`) rises by one
/// per nack missing from a failed round (by one when no helper was available) and by one per
/// refutation, and falls by one per ack to a direct ping; a node that is itself slow thereby
/// probes less often and waits longer, instead of accusing healthy peers. Suspicion timeouts
/// start at the maximum and shrink toward the minimum with each independent confirmation.
///
/// Dissemination (SWIM §4.1). Every message carries the sender's own state first, which is how a
/// refutation, a join or a health payload reaches its direct peers, then the queued updates that
/// have been sent least, newest first, each at most `retransmitLimit` times, as many as fit in
/// `maxPacketSize`. A message to a member this node does not believe alive also carries this
/// node's view of it, so it can refute even after the gossip about it ran out (Lifeguard's
/// Buddy System); the answer to a ping from a member that was unknown, dead or left is topped
/// up with a random sample of the membership, so a joiner learns the cluster from its first
/// ack and a restarted member hears of its own death and refutes it.
///
/// Precedence (SWIM §4.2, memberlist `aliveNode`/`suspectNode`/`deadNode`), for a member at
/// incarnation i hearing a claim at incarnation j:
/// - `alive` applies when j > i, and readmits a dead or left member;
/// - `suspect` applies to an alive member when j ≥ i; to a suspect member at j = i it is a
///   confirmation, at j > i a new suspicion;
/// - `dead` applies to an alive or suspect member when j ≥ i, and to a left one when j > i;
/// - `left` applies to any member not already left when j ≥ i.
/// Claims about this node are never applied: a suspect, dead or left claim at j ≥ own
/// incarnation, or an alive claim newer than own or with other addresses, is refuted by moving to
/// incarnation j + 1. Dead and left members are kept with their status, and every
/// `reconnectInterval` one random dead member is pinged in case it is back.
public struct SWIMInstance<RNG: RandomNumberGenerator> {
    public let settings: SWIM.Settings
    public private(set) var localMember: SWIM.Member
    private var rng: RNG

    private var peers: [String: Peer] = [:]
    private var broadcasts: [Broadcast] = []
    private var nextBroadcastID: UInt64 = 0
    private var lastSeq: UInt64 = 0
    private var awareness = 0
    private var probeOrder: [String] = []
    private var probeIndex = 0
    private var probe: Probe?
    private var nextRoundAt: Duration?
    private var nextReconnectAt: Duration?
    /// Indirect probes this node runs for others, by the seq of its own ping to the target.
    private var relays: [UInt64: Relay] = [:]
    private var seeds: [String] = []
    private var announced = false
    private var hasLeft = false

    struct Peer {
        var member: SWIM.Member
        /// Who made the claim behind the current status.
        var observer: String
        var lastHeard: Duration
        var failedRounds = 0
        var suspicion: Suspicion?
    }

    /// Memberlist's `suspicion`: bounds fixed at the start, one confirmation per distinct observer
    /// other than the one that started it, none counted beyond `expected`.
    struct Suspicion {
        var start: Duration
        var minimum: Duration
        var maximum: Duration
        var expected: Int
        var confirmers: Set<String>
        var confirmations = 0

        var deadline: Duration {
            start
                + SWIM.Settings.suspicionTimeout(
                    min: minimum, max: maximum, expected: expected, confirmations: confirmations)
        }

        mutating func confirm(by observer: String) -> Bool {
            guard confirmations < expected, confirmers.insert(observer).inserted else { return false }
            confirmations += 1
            return true
        }
    }

    struct Broadcast {
        var update: SWIM.Update
        var transmits = 0
        var id: UInt64
    }

    struct Probe {
        var seq: UInt64
        var target: String
        var timeoutAt: Duration
        var end: Duration
        var indirectSent = false
        var acked = false
        var expectedNacks = 0
        var nacks = 0
    }

    struct Relay {
        var requester: String
        var requesterAddress: String
        var requesterSeq: UInt64
        var nackAt: Duration
        var expiresAt: Duration
        var nackSent = false
    }

    /// `local` joins as alive with its given incarnation; a restarted node should pass one higher
    /// than any it used before if it knows it, and otherwise refutes its old state when it hears it.
    public init(local: SWIM.Member, settings: SWIM.Settings = SWIM.Settings(), rng: RNG) {
        precondition(
            settings.probeTimeout > .zero && settings.probeTimeout < settings.probeInterval,
            "SWIM probeTimeout must be positive and shorter than probeInterval")
        precondition(settings.indirectProbeTimeout > .zero, "SWIM indirectProbeTimeout must be positive")
        precondition((settings.reconnectInterval ?? .seconds(1)) > .zero, "SWIM reconnectInterval must be positive")
        precondition(
            settings.indirectChecks >= 0 && settings.detectionThreshold >= 1 && settings.awarenessMaxMultiplier >= 1
                && settings.suspicionMultiplier >= 1 && settings.suspicionMaxTimeoutMultiplier >= 1
                && settings.retransmitMultiplier >= 1, "SWIM settings out of range")
        precondition(
            local.health.count <= SWIM.maxHealthBytes, "SWIM health payload exceeds \(SWIM.maxHealthBytes) bytes")
        self.settings = settings
        self.rng = rng
        var local = local
        local.status = .alive
        self.localMember = local
    }

    // MARK: Queries

    /// Every known member, this node included, by name.
    public var members: [SWIM.Member] {
        ([localMember] + peers.values.map(\.member)).sorted { $0.name < $1.name }
    }

    public func member(named name: String) -> SWIM.Member? {
        name == localMember.name ? localMember : peers[name]?.member
    }

    /// Lifeguard's Local Health Multiplier: 0 when healthy; timeouts are scaled by this + 1.
    public var localHealthMultiplier: Int { awareness }

    /// Alive and suspect members, this node included: the N of the suspicion and retransmit
    /// formulas.
    public var activeMemberCount: Int { 1 + peers.values.count { $0.member.status.isActive } }

    /// Updates waiting to be piggybacked.
    public var pendingUpdateCount: Int { broadcasts.count }

    // MARK: Inputs

    /// Announces the local node (first call only) and pings every seed address that is not an
    /// active member's; seeds are pinged again at each round while no other member is known.
    public mutating func join(seeds: [String], now: Duration) -> [SWIM.Directive] {
        guard !hasLeft else { return [] }
        var out: [SWIM.Directive] = []
        if !announced {
            announced = true
            out.append(.statusChanged(member: localMember, previous: nil))
        }
        for seed in seeds where seed != localMember.gossipAddress && !self.seeds.contains(seed) {
            self.seeds.append(seed)
        }
        pingUnknownSeeds(&out)
        return out
    }

    /// Advances the timers: indirect probes at the probe timeout, the end of a round, suspicion
    /// timeouts, nacks for indirect probes, and the start of the next round. Call often (every
    /// 50–100 ms); a late call handles everything that fell due.
    public mutating func onTick(now: Duration) -> [SWIM.Directive] {
        guard !hasLeft else { return [] }
        var out: [SWIM.Directive] = []
        serviceRelays(now: now, &out)
        if var p = probe {
            if !p.acked && !p.indirectSent && now >= p.timeoutAt {
                let window = p.end - p.timeoutAt
                sendIndirectProbes(&p, &out)
                // A late tick must not eat the helpers' time to answer.
                p.end = max(p.end, now + window)
            }
            probe = p
            if now >= p.end {
                probe = nil
                nextRoundAt = p.end
                finishRound(p, now: now, &out)
            }
        }
        expireSuspicions(now: now, &out)
        if probe == nil && now >= (nextRoundAt ?? now) {
            startRound(now: now, &out)
        }
        reconnect(now: now, &out)
        return out
    }

    /// Handles one decoded datagram; answers go to `fromAddress`, the transport's source address.
    public mutating func onMessage(_ message: SWIM.Message, fromAddress: String, now: Duration) -> [SWIM.Directive] {
        let sender = message.from
        guard !sender.isEmpty, sender != localMember.name else { return [] }
        let me = localMember.name
        var out: [SWIM.Directive] = []
        if hasLeft {
            // Keep telling whoever still pings that this node left.
            if case .ping(let seq, _, _) = message {
                let ack = compose(to: sender, snapshot: false) { .ack(seq: seq, from: me, updates: $0) }
                out.append(.send(ack, toAddress: fromAddress))
            }
            return out
        }
        let senderIsNew = !(peers[sender]?.member.status.isActive ?? false)
        for update in message.updates {
            apply(update, sender: sender, now: now, &out)
        }
        if peers[sender] != nil {
            peers[sender]!.lastHeard = now
            peers[sender]!.failedRounds = 0
        }
        switch message {
        case .ping(let seq, _, _):
            let ack = compose(to: sender, snapshot: senderIsNew) { .ack(seq: seq, from: me, updates: $0) }
            out.append(.send(ack, toAddress: fromAddress))
        case .ack(let seq, _, _):
            if probe?.seq == seq {
                probeAcked()
            } else if let relay = relays.removeValue(forKey: seq) {
                let ack = compose(to: relay.requester, snapshot: false) {
                    .ack(seq: relay.requesterSeq, from: me, updates: $0)
                }
                out.append(.send(ack, toAddress: relay.requesterAddress))
            }
        case .nack(let seq, _, _):
            if var p = probe, p.seq == seq, p.indirectSent, !p.acked {
                p.nacks += 1
                probe = p
            }
        case .pingRequest(let seq, _, let target, let targetAddress, _):
            if target == me {
                let ack = compose(to: sender, snapshot: false) { .ack(seq: seq, from: me, updates: $0) }
                out.append(.send(ack, toAddress: fromAddress))
            } else {
                let mine = takeSeq()
                relays[mine] = Relay(
                    requester: sender, requesterAddress: fromAddress, requesterSeq: seq,
                    nackAt: now + settings.indirectProbeTimeout, expiresAt: now + settings.probeInterval)
                let ping = compose(to: target, snapshot: false) { .ping(seq: mine, from: me, updates: $0) }
                out.append(.send(ping, toAddress: targetAddress))
            }
        }
        return out
    }

    /// Another detector (request timeouts to the peer's API, a dropped stream) found `name`
    /// unreachable: counts as one failed probe round of it. Local health is unaffected: nothing
    /// says whether this node or the peer is the slow one.
    public mutating func onPeerUnreachable(_ name: String, now: Duration) -> [SWIM.Directive] {
        guard !hasLeft, peers[name]?.member.status.isActive == true else { return [] }
        var out: [SWIM.Directive] = []
        recordFailedRound(of: name, now: now, &out)
        return out
    }

    /// Leaves gracefully: moves to `left` at a new incarnation and tells every active member at
    /// once, so they record a departure rather than wait out a failure. Afterwards the instance
    /// only answers pings, with its `left` state.
    public mutating func leave(now: Duration) -> [SWIM.Directive] {
        guard !hasLeft, localMember.incarnation < .max else { return [] }
        let me = localMember.name
        let previous = localMember.status
        localMember.incarnation += 1
        localMember.status = .left
        hasLeft = true
        probe = nil
        relays = [:]
        var out: [SWIM.Directive] = [.statusChanged(member: localMember, previous: previous)]
        for name in peers.keys.sorted() where peers[name]!.member.status.isActive {
            let seq = takeSeq()
            let ping = compose(to: name, snapshot: false) { .ping(seq: seq, from: me, updates: $0) }
            out.append(.send(ping, toAddress: peers[name]!.member.gossipAddress))
        }
        return out
    }

    /// Sets the health payload carried with this node's own state from now on.
    public mutating func setLocalHealth(_ bytes: [UInt8]) {
        precondition(bytes.count <= SWIM.maxHealthBytes, "SWIM health payload exceeds \(SWIM.maxHealthBytes) bytes")
        localMember.health = bytes
    }

    // MARK: Probe rounds

    private mutating func startRound(now: Duration, _ out: inout [SWIM.Directive]) {
        let scale = awareness + 1
        let interval = settings.probeInterval * scale
        nextRoundAt = now + interval
        guard let target = nextProbeTarget(now: now), let address = peers[target]?.member.gossipAddress else {
            pingUnknownSeeds(&out)
            return
        }
        let me = localMember.name
        let seq = takeSeq()
        let ping = compose(to: target, snapshot: false) { .ping(seq: seq, from: me, updates: $0) }
        out.append(.send(ping, toAddress: address))
        probe = Probe(seq: seq, target: target, timeoutAt: now + settings.probeTimeout * scale, end: now + interval)
    }

    private mutating func nextProbeTarget(now: Duration) -> String? {
        if let urgent = probeOrder.first(where: { isUrgent($0, now: now) }) {
            return urgent
        }
        for _ in 0..<2 {
            while probeIndex < probeOrder.count {
                let name = probeOrder[probeIndex]
                probeIndex += 1
                if peers[name]?.member.status.isActive == true { return name }
            }
            probeOrder = peers.keys.filter { peers[$0]!.member.status.isActive }.sorted()
            probeOrder.shuffle(using: &rng)
            probeIndex = 0
        }
        return nil
    }

    private func isUrgent(_ name: String, now: Duration) -> Bool {
        guard let peer = peers[name], peer.member.status == .alive else { return false }
        if peer.failedRounds > 0 { return true }
        if let silence = settings.gossipSilenceTimeout, now - peer.lastHeard >= silence { return true }
        return false
    }

    private mutating func insertIntoProbeOrder(_ name: String) {
        guard !probeOrder.contains(name) else { return }
        probeOrder.insert(name, at: Int.random(in: probeIndex...probeOrder.count, using: &rng))
    }

    private mutating func sendIndirectProbes(_ p: inout Probe, _ out: inout [SWIM.Directive]) {
        p.indirectSent = true
        guard let target = peers[p.target]?.member, target.status.isActive else { return }
        var helpers = peers.keys.filter { $0 != p.target && peers[$0]!.member.status == .alive }.sorted()
        helpers.shuffle(using: &rng)
        helpers = Array(helpers.prefix(settings.indirectChecks))
        p.expectedNacks = helpers.count
        let me = localMember.name
        for helper in helpers {
            let seq = p.seq
            let request = compose(to: helper, snapshot: false) {
                .pingRequest(seq: seq, from: me, target: target.name, targetAddress: target.gossipAddress, updates: $0)
            }
            out.append(.send(request, toAddress: peers[helper]!.member.gossipAddress))
        }
    }

    private mutating func probeAcked() {
        guard var p = probe, !p.acked else { return }
        p.acked = true
        probe = p
        if !p.indirectSent { adjustAwareness(-1) }
        peers[p.target]?.failedRounds = 0
    }

    private mutating func finishRound(_ p: Probe, now: Duration, _ out: inout [SWIM.Directive]) {
        guard !p.acked, peers[p.target]?.member.status.isActive == true else { return }
        adjustAwareness(p.expectedNacks > 0 ? p.expectedNacks - min(p.nacks, p.expectedNacks) : 1)
        recordFailedRound(of: p.target, now: now, &out)
    }

    private mutating func recordFailedRound(of name: String, now: Duration, _ out: inout [SWIM.Directive]) {
        guard var peer = peers[name] else { return }
        peer.failedRounds += 1
        peers[name] = peer
        switch peer.member.status {
        case .alive where peer.failedRounds >= settings.detectionThreshold:
            suspect(name, incarnation: peer.member.incarnation, observer: localMember.name, now: now, &out)
        case .suspect:
            if peers[name]!.suspicion?.confirm(by: localMember.name) == true {
                enqueue(SWIM.Update(peer.member, observer: localMember.name))
            }
        default:
            break
        }
    }

    private mutating func adjustAwareness(_ delta: Int) {
        awareness = min(max(awareness + delta, 0), settings.awarenessMaxMultiplier - 1)
    }

    private mutating func serviceRelays(now: Duration, _ out: inout [SWIM.Directive]) {
        guard !relays.isEmpty else { return }
        let me = localMember.name
        for seq in relays.keys.sorted() {
            guard var relay = relays[seq] else { continue }
            if now >= relay.expiresAt {
                relays[seq] = nil
                continue
            }
            if !relay.nackSent && now >= relay.nackAt {
                relay.nackSent = true
                relays[seq] = relay
                let nack = compose(to: relay.requester, snapshot: false) {
                    .nack(seq: relay.requesterSeq, from: me, updates: $0)
                }
                out.append(.send(nack, toAddress: relay.requesterAddress))
            }
        }
    }

    private mutating func expireSuspicions(now: Duration, _ out: inout [SWIM.Directive]) {
        let due = peers.filter { $0.value.member.status == .suspect && ($0.value.suspicion?.deadline ?? now) <= now }
        for name in due.keys.sorted() {
            retire(name, as: .dead, incarnation: peers[name]!.member.incarnation, observer: localMember.name, &out)
        }
    }

    /// The ping carries this node's view of the member, so if it is back it hears of its death
    /// and refutes; its ack carries the refutation, which readmits it.
    private mutating func reconnect(now: Duration, _ out: inout [SWIM.Directive]) {
        guard let interval = settings.reconnectInterval else { return }
        guard let due = nextReconnectAt, now >= due else {
            if nextReconnectAt == nil { nextReconnectAt = now + interval }
            return
        }
        nextReconnectAt = now + interval
        let dead = peers.keys.filter { peers[$0]!.member.status == .dead }.sorted()
        guard let name = dead.randomElement(using: &rng), let address = peers[name]?.member.gossipAddress else {
            return
        }
        let me = localMember.name
        let seq = takeSeq()
        let ping = compose(to: name, snapshot: false) { .ping(seq: seq, from: me, updates: $0) }
        out.append(.send(ping, toAddress: address))
    }

    private mutating func pingUnknownSeeds(_ out: inout [SWIM.Directive]) {
        let known = Set(peers.values.filter { $0.member.status.isActive }.map(\.member.gossipAddress))
        let me = localMember.name
        for seed in seeds where !known.contains(seed) {
            let seq = takeSeq()
            let ping = compose(to: nil, snapshot: false) { .ping(seq: seq, from: me, updates: $0) }
            out.append(.send(ping, toAddress: seed))
        }
    }

    private mutating func takeSeq() -> UInt64 {
        lastSeq &+= 1
        return lastSeq
    }

    // MARK: Membership rules

    private mutating func apply(_ u: SWIM.Update, sender: String, now: Duration, _ out: inout [SWIM.Directive]) {
        guard !u.name.isEmpty, u.health.count <= SWIM.maxHealthBytes else { return }
        if u.name == localMember.name {
            applyAboutSelf(u)
            return
        }
        guard var peer = peers[u.name] else {
            admit(u, now: now, &out)
            return
        }
        let current = peer.member
        switch u.status {
        case .alive:
            if u.incarnation > current.incarnation {
                peer.member = SWIM.Member(
                    name: u.name, gossipAddress: u.gossipAddress, apiAddress: u.apiAddress, status: .alive,
                    incarnation: u.incarnation, health: u.health)
                peer.observer = u.observer
                peer.suspicion = nil
                peer.failedRounds = 0
                peer.lastHeard = max(peer.lastHeard, now)
                peers[u.name] = peer
                enqueue(SWIM.Update(peer.member, observer: u.observer))
                if current.status != .alive {
                    insertIntoProbeOrder(u.name)
                    out.append(.statusChanged(member: peer.member, previous: current.status))
                }
            } else if u.incarnation == current.incarnation && u.name == sender && current.status.isActive {
                // A member is the authority on its own health; fresh readings need no new incarnation.
                peers[u.name]!.member.health = u.health
            }
        case .suspect:
            switch current.status {
            case .alive where u.incarnation >= current.incarnation:
                suspect(u.name, incarnation: u.incarnation, observer: u.observer, now: now, &out)
            case .suspect where u.incarnation > current.incarnation:
                suspect(u.name, incarnation: u.incarnation, observer: u.observer, now: now, &out)
            case .suspect where u.incarnation == current.incarnation:
                if peers[u.name]!.suspicion?.confirm(by: u.observer) == true {
                    enqueue(SWIM.Update(current, observer: u.observer))
                }
            default:
                break
            }
        case .dead:
            if (current.status.isActive && u.incarnation >= current.incarnation)
                || (current.status == .left && u.incarnation > current.incarnation)
            {
                retire(u.name, as: .dead, incarnation: u.incarnation, observer: u.observer, &out)
            }
        case .left:
            if current.status != .left && u.incarnation >= current.incarnation {
                retire(u.name, as: .left, incarnation: u.incarnation, observer: u.observer, &out)
            }
        }
    }

    private mutating func applyAboutSelf(_ u: SWIM.Update) {
        guard !hasLeft else { return }
        switch u.status {
        case .alive:
            let conflicting = u.gossipAddress != localMember.gossipAddress || u.apiAddress != localMember.apiAddress
            if u.incarnation > localMember.incarnation || (u.incarnation == localMember.incarnation && conflicting) {
                refute(u.incarnation)
            }
        case .suspect, .dead, .left:
            if u.incarnation >= localMember.incarnation { refute(u.incarnation) }
        }
    }

    /// Memberlist `refute`: beat the accusation's incarnation and count it against local health.
    /// The new incarnation travels as the self entry of every message from here on.
    private mutating func refute(_ accused: SWIM.Incarnation) {
        guard accused < .max else { return }
        localMember.incarnation = max(localMember.incarnation, accused + 1)
        adjustAwareness(1)
    }

    private mutating func admit(_ u: SWIM.Update, now: Duration, _ out: inout [SWIM.Directive]) {
        let member = SWIM.Member(
            name: u.name, gossipAddress: u.gossipAddress, apiAddress: u.apiAddress, status: u.status,
            incarnation: u.incarnation, health: u.health)
        var peer = Peer(member: member, observer: u.observer, lastHeard: now)
        if u.status == .suspect {
            peer.suspicion = newSuspicion(observer: u.observer, now: now, joining: true)
        }
        peers[u.name] = peer
        if u.status.isActive { insertIntoProbeOrder(u.name) }
        enqueue(u)
        out.append(.statusChanged(member: member, previous: nil))
    }

    private mutating func suspect(
        _ name: String, incarnation: SWIM.Incarnation, observer: String, now: Duration, _ out: inout [SWIM.Directive]
    ) {
        guard var peer = peers[name] else { return }
        let previous = peer.member.status
        peer.member.status = .suspect
        peer.member.incarnation = incarnation
        peer.observer = observer
        peer.suspicion = newSuspicion(observer: observer, now: now, joining: false)
        peers[name] = peer
        enqueue(SWIM.Update(peer.member, observer: observer))
        if previous != .suspect {
            out.append(.statusChanged(member: peer.member, previous: previous))
        }
    }

    /// `joining` counts a member that is being admitted straight into suspicion, which is not yet
    /// in `activeMemberCount`.
    private func newSuspicion(observer: String, now: Duration, joining: Bool) -> Suspicion {
        let n = activeMemberCount + (joining ? 1 : 0)
        return Suspicion(
            start: now, minimum: settings.minSuspicionTimeout(memberCount: n),
            maximum: settings.maxSuspicionTimeout(memberCount: n),
            expected: settings.expectedConfirmations(memberCount: n),
            confirmers: [observer])
    }

    private mutating func retire(
        _ name: String, as status: SWIM.Status, incarnation: SWIM.Incarnation, observer: String,
        _ out: inout [SWIM.Directive]
    ) {
        guard var peer = peers[name] else { return }
        let previous = peer.member.status
        peer.member.status = status
        peer.member.incarnation = incarnation
        peer.observer = observer
        peer.suspicion = nil
        peer.failedRounds = 0
        peers[name] = peer
        enqueue(SWIM.Update(peer.member, observer: observer))
        out.append(.statusChanged(member: peer.member, previous: previous))
    }

    // MARK: Dissemination

    /// A newer claim about a member replaces any queued one (memberlist's
    /// `TransmitLimitedQueue` invalidation).
    private mutating func enqueue(_ update: SWIM.Update) {
        broadcasts.removeAll { $0.update.name == update.name }
        nextBroadcastID += 1
        broadcasts.append(Broadcast(update: update, id: nextBroadcastID))
    }

    /// Builds a message whose encoding fits `maxPacketSize`: own state, this node's view of a
    /// recipient it does not believe alive, queued updates (least sent, then newest, first), and
    /// with `snapshot` a random sample of the membership. Counts transmissions of queued updates.
    private mutating func compose(
        to recipient: String?, snapshot: Bool, _ make: ([SWIM.Update]) -> SWIM.Message
    ) -> SWIM.Message {
        var packet = Packet(limit: settings.maxPacketSize, header: SWIMCodec.encode(make([])).count - 1)
        packet.force(SWIM.Update(localMember, observer: localMember.name))
        if let recipient, let peer = peers[recipient], peer.member.status != .alive {
            _ = packet.add(SWIM.Update(peer.member, observer: peer.observer))
        }
        let limit = settings.retransmitLimit(memberCount: activeMemberCount)
        let order = broadcasts.indices.sorted {
            (broadcasts[$0].transmits, broadcasts[$1].id) < (broadcasts[$1].transmits, broadcasts[$0].id)
        }
        var sent: [Int] = []
        for i in order where packet.add(broadcasts[i].update) {
            sent.append(i)
        }
        for i in sent { broadcasts[i].transmits += 1 }
        broadcasts.removeAll { $0.transmits >= limit }
        if snapshot {
            var sample = peers.keys.sorted()
            sample.shuffle(using: &rng)
            let active = sample.filter { peers[$0]!.member.status.isActive }
            let inactive = sample.filter { !peers[$0]!.member.status.isActive }
            for name in active + inactive {
                _ = packet.add(SWIM.Update(peers[name]!.member, observer: peers[name]!.observer))
            }
        }
        return make(packet.updates)
    }

    /// Accumulates updates while the encoded message stays within the limit; at most one update
    /// per member.
    struct Packet {
        let limit: Int
        /// Encoded size of the message without updates and without the update count.
        let header: Int
        var updates: [SWIM.Update] = []
        var names: Set<String> = []
        var body = 0

        init(limit: Int, header: Int) {
            self.limit = limit
            self.header = header
        }

        mutating func add(_ update: SWIM.Update) -> Bool {
            guard !names.contains(update.name) else { return false }
            let size = SWIMCodec.encodedSize(of: update)
            guard header + SWIMCodec.varintSize(UInt64(updates.count + 1)) + body + size <= limit else { return false }
            append(update, size: size)
            return true
        }

        /// The sender's own state goes in even if the limit is absurdly small.
        mutating func force(_ update: SWIM.Update) {
            append(update, size: SWIMCodec.encodedSize(of: update))
        }

        private mutating func append(_ update: SWIM.Update, size: Int) {
            updates.append(update)
            names.insert(update.name)
            body += size
        }
    }
}

extension SWIMInstance: Sendable where RNG: Sendable {}
