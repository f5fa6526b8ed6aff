import EventLog
import Testing

@testable import Replication

typealias Instance = SWIMInstance<SplitMix64>

enum SWIMFixture {
    static func member(_ i: Int, incarnation: SWIM.Incarnation = 0) -> SWIM.Member {
        SWIM.Member(
            name: "node-\(i)", gossipAddress: "10.0.0.\(i):7946", apiAddress: "10.0.0.\(i):8080",
            incarnation: incarnation)
    }

    static func update(
        _ i: Int, _ status: SWIM.Status = .alive, incarnation: SWIM.Incarnation = 0, observer: String? = nil
    ) -> SWIM.Update {
        var m = member(i, incarnation: incarnation)
        m.status = status
        return SWIM.Update(m, observer: observer ?? m.name)
    }

    static func instance(_ i: Int, settings: SWIM.Settings = SWIM.Settings(), seed: UInt64 = 1) -> Instance {
        Instance(local: member(i), settings: settings, rng: SplitMix64(seed: seed))
    }

    /// An instance that knows `others` as alive, learned from one ping of each.
    static func instance(_ i: Int, knowing others: [Int], settings: SWIM.Settings = SWIM.Settings()) -> Instance {
        var swim = instance(i, settings: settings)
        for j in others {
            _ = swim.onMessage(
                .ping(seq: 1, from: "node-\(j)", updates: [update(j)]), fromAddress: member(j).gossipAddress,
                now: .zero)
        }
        return swim
    }
}

extension [SWIM.Directive] {
    var sends: [(message: SWIM.Message, to: String)] {
        compactMap {
            if case .send(let m, let to) = $0 { return (m, to) }
            return nil
        }
    }

    var transitions: [(member: SWIM.Member, previous: SWIM.Status?)] {
        compactMap {
            if case .statusChanged(let m, let p) = $0 { return (m, p) }
            return nil
        }
    }
}

extension SWIM.Message {
    var isPing: Bool {
        if case .ping = self { return true }
        return false
    }
    var isAck: Bool {
        if case .ack = self { return true }
        return false
    }
    var isNack: Bool {
        if case .nack = self { return true }
        return false
    }
    var pingRequestTarget: String? {
        if case .pingRequest(_, _, let target, _, _) = self { return target }
        return nil
    }
}

/// A few instances wired together by address: every directive is encoded with `SWIMCodec`,
/// checked against the packet limit, decoded and delivered in order, at once or after `latency`.
/// Virtual time advances in 50 ms ticks.
struct SWIMNetwork {
    static let tick: Duration = .milliseconds(50)

    struct Transition: Hashable {
        var at: Duration
        var observer: String
        var member: String
        var status: SWIM.Status
        var incarnation: SWIM.Incarnation
    }

    struct TraceEntry: Hashable {
        var at: Duration
        var node: String
        var directive: SWIM.Directive
    }

    let settings: SWIM.Settings
    let seed: UInt64
    var nodes: [String: Instance] = [:]
    var names: [String] = []
    var addresses: [String: String] = [:]
    /// Neither ticked nor delivered to: crashed or frozen.
    var stopped: Set<String> = []
    /// Ticked, but every message addressed to them is lost.
    var deaf: Set<String> = []
    /// Messages between nodes of different sides are lost; nodes not listed are on side 0.
    var sides: [String: Int] = [:]
    var now: Duration = .zero
    var trace: [TraceEntry] = []
    var transitions: [Transition] = []
    var largestDatagram = 0
    var datagrams = 0
    /// One-way delay of every datagram, rounded up to ticks; zero delivers within the same tick.
    let latency: Duration
    var inFlight: [(at: Duration, from: String, message: SWIM.Message, address: String)] = []

    init(size: Int, seed: UInt64, settings: SWIM.Settings = SWIM.Settings(), latency: Duration = .zero) {
        self.settings = settings
        self.seed = seed
        self.latency = latency
        for i in 1...size { start(i, incarnation: 0) }
    }

    static func name(_ i: Int) -> String { "node-\(i)" }

    /// Starts (or restarts, replacing the old instance) node `i` and joins it through node-1.
    mutating func start(_ i: Int, incarnation: SWIM.Incarnation) {
        let member = SWIMFixture.member(i, incarnation: incarnation)
        var instance = Instance(
            local: member, settings: settings, rng: SplitMix64(seed: seed &* 1_000_003 &+ UInt64(i) &+ incarnation))
        if nodes[member.name] == nil { names.append(member.name) }
        addresses[member.gossipAddress] = member.name
        stopped.remove(member.name)
        let out = instance.join(seeds: [SWIMFixture.member(1).gossipAddress], now: now)
        nodes[member.name] = instance
        deliver(out, from: member.name)
    }

    mutating func step() {
        now += Self.tick
        let due = inFlight.filter { $0.at <= now }
        inFlight.removeAll { $0.at <= now }
        for datagram in due {
            process(receive(datagram.message, from: datagram.from, at: datagram.address))
        }
        for name in names where !stopped.contains(name) {
            let out = nodes[name]!.onTick(now: now)
            deliver(out, from: name)
        }
    }

    mutating func run(for duration: Duration) {
        let end = now + duration
        while now < end { step() }
    }

    /// Runs until `condition` holds (checked after every tick); false if `limit` passes first.
    mutating func run(upTo limit: Duration, until condition: (SWIMNetwork) -> Bool) -> Bool {
        let end = now + limit
        while now < end {
            step()
            if condition(self) { return true }
        }
        return false
    }

    mutating func deliver(_ directives: [SWIM.Directive], from sender: String) {
        process(directives.map { (sender, $0) })
    }

    private mutating func process(_ directives: [(String, SWIM.Directive)]) {
        var queue = directives
        var next = 0
        while next < queue.count {
            let (from, directive) = queue[next]
            next += 1
            trace.append(TraceEntry(at: now, node: from, directive: directive))
            switch directive {
            case .statusChanged(let member, _):
                transitions.append(
                    Transition(
                        at: now, observer: from, member: member.name, status: member.status,
                        incarnation: member.incarnation))
            case .send(let message, let address):
                let bytes = SWIMCodec.encode(message)
                datagrams += 1
                largestDatagram = max(largestDatagram, bytes.count)
                #expect(bytes.count <= settings.maxPacketSize)
                let decoded = try? SWIMCodec.decode(bytes)
                #expect(decoded == message)
                guard let decoded else { continue }
                if latency > .zero {
                    inFlight.append((now + latency, from, decoded, address))
                } else {
                    queue.append(contentsOf: receive(decoded, from: from, at: address))
                }
            }
        }
    }

    private mutating func receive(
        _ message: SWIM.Message, from: String, at address: String
    ) -> [(String, SWIM.Directive)] {
        guard let to = addresses[address], !stopped.contains(to), !deaf.contains(to),
            sides[to, default: 0] == sides[from, default: 0]
        else { return [] }
        let fromAddress = nodes[from]!.localMember.gossipAddress
        return nodes[to]!.onMessage(message, fromAddress: fromAddress, now: now).map { (to, $0) }
    }

    func view(of member: String, by observer: String) -> SWIM.Member? {
        nodes[observer]?.member(named: member)
    }

    /// Every running node sees every running node alive.
    func allRunningSeeEachOtherAlive() -> Bool {
        let running = names.filter { !stopped.contains($0) }
        return running.allSatisfy { observer in
            running.allSatisfy { view(of: $0, by: observer)?.status == .alive }
        }
    }

    func transitions(of member: String, by observer: String? = nil) -> [Transition] {
        transitions.filter { $0.member == member && (observer == nil || $0.observer == observer) }
    }
}
