import Crypto
import EventLog
import Replication

/// A seeded, deterministic simulation of a Bifrost cluster: membership and event replication
/// under faults, checked against invariants (DESIGN §7; TigerBeetle's VOPR, `src/vopr.zig`).
///
/// Every node runs the production state machines (`SWIMInstance`, `PeerSync`, `Reconciliation`,
/// `HybridLogicalClock`, `ViewState`) over `InMemoryEventSet` (indexed like a real store by
/// `SimulatedStore`), and every message crosses its real wire format (`SWIMCodec`,
/// `SyncCodec`). Virtual time advances in 10 ms ticks; one seed drives every choice — cluster
/// size, clock skews, fault rates, sync batch size and reconcile interval, the workload, each
/// fault — so a seed replays its run exactly: no wall clock, no threads, no global randomness,
/// and no iteration over unordered collections where order could leak into the run.
///
/// A run has three parts:
/// 1. **Safety phase** (`safetyDuration`): nodes append events while the network drops,
///    delays, duplicates and reorders datagrams and partitions the cluster, nodes crash and
///    restart, and clocks jump forward (up to 2 s) or back (up to 1 s). Invariants checked as it
///    goes: every node's HLC only moves forward, a quarantined timestamp does not move the
///    clock, a replayed log gives the view that was folded incrementally, and on a sample of
///    direct reconciliations between two logs the reconciler finds exactly the true set
///    difference within its window.
/// 2. **Liveness phase** (up to `livenessBound`): every fault heals, no new ones, no new
///    appends; ticks until all logs agree and every node sees every other alive.
/// 3. **Checks**: identical event sets, root fingerprints and encoded views everywhere; every
///    acknowledged (synced-durability) event everywhere; every pair's final reconciliation
///    finds nothing missing; membership all alive.
///
/// Sync connections follow the `bifrost` shell (`SyncService`, `MembershipService`): a pair is
/// connected while both nodes are up, the network joins them and each lists the other as an
/// active member; a connection drops, with its `PeerSync` state and messages in flight, on
/// partition, crash or a membership change, and reopens (new `hello`, watermark catch-up,
/// reconciliation) when the conditions hold again. Membership transitions are recorded as
/// `membership.changed` events, as the node's `MembershipService` does.
public struct ClusterSimulator {
    /// Length of one step of virtual time.
    public static let tick: Duration = .milliseconds(10)
    /// Unix time at virtual time zero (2026-01-01T00:00:00Z): HLCs look like production ones,
    /// so digest buckets and reconciliation windows have production shapes.
    public static let epochMillis: UInt64 = 1_767_225_600_000

    public struct Options: Sendable, Hashable {
        public var seed: UInt64
        /// Cluster size; nil lets the seed choose 3…7.
        public var nodes: Int?
        /// Virtual time with faults and appends.
        public var safetyDuration: Duration = .seconds(60)
        /// Most virtual time the healed cluster gets to converge.
        public var livenessBound: Duration = .seconds(120)
        /// Partitions, crashes, clock jumps, datagram loss, duplication and reordering. Off:
        /// only delays remain.
        public var faults = true
        /// Tier-2 anti-entropy: off discards every `reconcile` message a node sends, leaving
        /// streaming and watermark catch-up only (to show that the checks catch what only
        /// reconciliation repairs).
        public var reconciliation = true
        /// Off: a pair whose connection dropped never connects again.
        public var reconnect = true
        /// Cluster-wide rate of appends during the safety phase.
        public var eventsPerSecond = 20.0
        /// Virtual time between direct reconciliations checked against the true set difference.
        public var reconcilerCheckInterval: Duration = .seconds(1)
        /// Keep the last this-many lines of a human-readable trace in the report (0: none;
        /// does not change the run).
        public var traceLines = 0

        public init(
            seed: UInt64, nodes: Int? = nil, safetyDuration: Duration = .seconds(60),
            livenessBound: Duration = .seconds(120), faults: Bool = true
        ) {
            self.seed = seed
            self.nodes = nodes
            self.safetyDuration = safetyDuration
            self.livenessBound = livenessBound
            self.faults = faults
        }

        /// The `bifrost-sim` arguments that replay this run (defaults omitted).
        public var replayArguments: [String] {
            let defaults = Options(seed: seed)
            var args = ["--seed", "\(seed)"]
            if let nodes { args += ["--nodes", "\(nodes)"] }
            if safetyDuration != defaults.safetyDuration {
                args += ["--safety-seconds", Self.seconds(safetyDuration)]
            }
            if livenessBound != defaults.livenessBound {
                args += ["--liveness-seconds", Self.seconds(livenessBound)]
            }
            if !faults { args.append("--no-faults") }
            if !reconciliation { args.append("--no-reconciliation") }
            if !reconnect { args.append("--no-reconnect") }
            if eventsPerSecond != defaults.eventsPerSecond { args += ["--events-per-second", "\(eventsPerSecond)"] }
            if reconcilerCheckInterval != defaults.reconcilerCheckInterval {
                args += ["--check-interval-seconds", Self.seconds(reconcilerCheckInterval)]
            }
            return args
        }

        /// The one command that replays this run (with its `make` equivalent when the run used
        /// the default options).
        public var replayCommand: String {
            let args = replayArguments
            let command = "swift run bifrost-sim \(args.joined(separator: " "))"
            return args.count == 2 ? "\(command)  (or: make sim SEED=\(seed) SEEDS=1)" : command
        }

        static func seconds(_ d: Duration) -> String {
            let ms = d.simulatorMillis
            return ms % 1000 == 0 ? "\(ms / 1000)" : "\(Double(ms) / 1000)"
        }
    }

    /// What a run did and whether it held every invariant.
    public struct Report: Sendable, Hashable, Codable {
        public var seed: UInt64
        public var nodes: Int
        public var passed: Bool
        /// One message per broken invariant, each with the seed and the replay command.
        public var failures: [String]
        public var replayCommand: String
        public var eventsAppended = 0
        /// Events of other nodes newly inserted (streaming, catch-up and repair).
        public var eventsDelivered = 0
        /// Remote events refused by the receiver's HLC (timestamp too far ahead).
        public var eventsQuarantined = 0
        /// Events shipped by reconciliation sessions (`PeerSync` counters).
        public var eventsRepaired = 0
        /// `PeerSync.Settings` the seed chose.
        public var syncBatchEvents = 0
        public var reconcileIntervalMillis: Int64 = 0
        /// Events that reached a node already holding them (work done twice), by the path
        /// that sent them: live streaming, watermark catch-up, reconciliation repair.
        public var eventsRedundantStreamed = 0
        public var eventsRedundantCaughtUp = 0
        public var eventsRedundantRepaired = 0
        /// Config, weight and membership events (synced durability), checked at the end.
        public var eventsAcknowledged = 0
        public var datagramsSent = 0
        public var datagramsDelivered = 0
        /// Lost to the drop rate, a partition or a down receiver.
        public var datagramsDropped = 0
        public var datagramsDuplicated = 0
        public var syncMessages = 0
        public var syncBytes = 0
        public var connectionsOpened = 0
        public var connectionsDropped = 0
        public var membershipChanges = 0
        public var partitions = 0
        public var crashes = 0
        /// Restarts whose clock-derived incarnation was not above the last life's, so the node
        /// had to refute its old state.
        public var staleIncarnationRestarts = 0
        public var clockJumps = 0
        /// Reconciliation sessions `PeerSync` started.
        public var reconciliations = 0
        /// Direct reconciliations compared with the true set difference.
        public var reconcilerChecks = 0
        public var virtualMillis: Int64 = 0
        /// From healing to convergence; nil if the cluster did not converge within the bound.
        public var convergenceMillis: Int64?
        /// SHA-256 (first 8 bytes) of every delivered message, append and fault, in order: equal
        /// for equal seeds.
        public var traceHash: UInt64 = 0
        /// The last `Options.traceLines` lines of the run's trace.
        public var trace: [String] = []

        public var traceHex: String {
            let digits = String(traceHash, radix: 16)
            return String(repeating: "0", count: 16 - digits.count) + digits
        }

        /// One line for a terminal.
        public var summary: String {
            let converged = convergenceMillis.map { "converged \(Options.seconds(.milliseconds($0))) s after healing" }
            return [
                "seed \(seed)", "\(nodes) nodes", passed ? "PASS" : "FAIL",
                "\(eventsAppended) events (\(eventsDelivered) delivered, \(eventsQuarantined) quarantined, "
                    + "\(eventsRepaired) repaired)",
                "\(partitions) partitions, \(crashes) crashes, \(clockJumps) clock jumps, "
                    + "\(datagramsDropped)/\(datagramsSent) datagrams dropped",
                "\(reconciliations) reconciliations, \(reconcilerChecks) checked",
                converged ?? "did not converge", "trace \(traceHex)",
            ].joined(separator: " · ")
        }
    }

    /// Runs one simulation to the end and checks it.
    public static func run(_ options: Options) -> Report {
        var simulator = ClusterSimulator(options)
        return simulator.run()
    }

    // MARK: State

    /// Fault rates and network conditions, chosen by the seed.
    struct FaultProfile {
        var network: SimulatedNetwork.Conditions
        var partitionsPerMinute: Double
        var crashesPerMinute: Double
        var clockJumpsPerMinute: Double

        static func random(using rng: inout SplitMix64) -> FaultProfile {
            FaultProfile(
                network: SimulatedNetwork.Conditions(
                    dropRate: Double.random(in: 0...0.2, using: &rng),
                    duplicateRate: Double.random(in: 0...0.05, using: &rng),
                    reorderRate: Double.random(in: 0...0.1, using: &rng)),
                partitionsPerMinute: Double.random(in: 1...6, using: &rng),
                crashesPerMinute: Double.random(in: 1...5, using: &rng),
                clockJumpsPerMinute: Double.random(in: 1...6, using: &rng))
        }
    }

    private let options: Options
    private let swimSettings = SWIM.Settings()
    private let syncSettings: PeerSync.Settings
    private let profile: FaultProfile
    private var now: Duration = .zero
    private var nodes: [SimulatedNode]
    private var addresses: [String: Int] = [:]
    private var network: SimulatedNetwork
    /// Indexed by `slot(a, b)` with a < b.
    private var connections: [SimulatedConnection?]
    private var everConnected: [Bool]
    private var nextConnectionID: UInt64 = 0
    private var partitionEndsAt: Duration?
    private var nextReconcilerCheck: Duration = .zero
    /// Separate streams, so that (say) a different workload does not move every fault.
    private var faultRNG: SplitMix64
    private var networkRNG: SplitMix64
    private var workloadRNG: SplitMix64
    private var checkRNG: SplitMix64
    private let swimSeed: UInt64
    private var acknowledged: [EventID] = []
    private var appendSerial = 0
    private var report: Report
    private var failureCount = 0
    /// PeerSync counters of connections that closed.
    private var closedSyncCounters: [PeerSync.Counters] = []
    private var traceHasher = SHA256()
    private let traceLog: TraceLog

    private static let maxFailures = 40

    private init(_ options: Options) {
        self.options = options
        var setup = SplitMix64(seed: options.seed)
        let n = options.nodes ?? Int.random(in: 3...7, using: &setup)
        precondition((2...26).contains(n), "the simulator runs 2…26 nodes, not \(n)")
        nodes = (0..<n).map { SimulatedNode(index: $0, skewMillis: Int64.random(in: -250...250, using: &setup)) }
        profile = FaultProfile.random(using: &setup)
        // Small batches exercise multi-batch catch-up and chunked repair; short intervals
        // exercise overlapping sessions.
        var sync = PeerSync.Settings()
        sync.batchEvents = [3, 16, 128, sync.batchEvents][Int.random(in: 0..<4, using: &setup)]
        sync.reconcileInterval = .seconds([2, 5, 10, 10, 20][Int.random(in: 0..<5, using: &setup)])
        syncSettings = sync
        network = SimulatedNetwork(nodeCount: n, conditions: options.faults ? profile.network : .calm)
        faultRNG = SplitMix64(seed: setup.next())
        networkRNG = SplitMix64(seed: setup.next())
        workloadRNG = SplitMix64(seed: setup.next())
        checkRNG = SplitMix64(seed: setup.next())
        swimSeed = setup.next()
        connections = Array(repeating: nil, count: n * n)
        everConnected = Array(repeating: false, count: n * n)
        traceLog = TraceLog(capacity: options.traceLines)
        report = Report(seed: options.seed, nodes: n, passed: false, failures: [], replayCommand: options.replayCommand)
        report.syncBatchEvents = sync.batchEvents
        report.reconcileIntervalMillis = sync.reconcileInterval.simulatorMillis
        for node in nodes { addresses[node.gossipAddress] = node.index }
    }

    private mutating func run() -> Report {
        for i in nodes.indices { boot(i) }
        while now < options.safetyDuration { step(safety: true) }
        heal()
        let healed = now
        var converged = false
        var ticks = 0
        while now < healed + options.livenessBound {
            step(safety: false)
            ticks += 1
            if ticks % 10 == 0 && isConverged() {
                converged = true
                break
            }
        }
        if converged {
            report.convergenceMillis = (now - healed).simulatorMillis
        } else {
            fail(
                "liveness",
                "the cluster did not converge within \(Options.seconds(options.livenessBound)) s of healing")
        }
        checkConvergence()
        checkAcknowledged()
        checkFinalReconciliation()
        checkMembership()
        return finish()
    }

    // MARK: Steps

    private mutating func step(safety: Bool) {
        now += Self.tick
        if safety && options.faults { injectFaults() }
        endFaults()
        deliverDatagrams()
        deliverSyncMessages()
        tickMembership()
        maintainConnections()
        tickSync()
        if safety {
            workload()
            if now >= nextReconcilerCheck {
                nextReconcilerCheck = now + options.reconcilerCheckInterval
                checkReconcilerSample()
            }
        }
    }

    private mutating func boot(_ i: Int) {
        var node = nodes[i]
        // As `bifrost` does: the incarnation is the machine's clock in seconds, normally higher
        // than the last life's; when it is not (a fast restart, a clock stepped back, many
        // refutations), the node refutes its old state when it hears of it.
        let incarnation = node.physicalMillis(at: now) / 1000
        if node.restarts > 0 && incarnation <= node.incarnation { report.staleIncarnationRestarts += 1 }
        node.incarnation = incarnation
        node.swim = SWIMInstance(
            local: node.member(incarnation: incarnation), settings: swimSettings,
            rng: SplitMix64(seed: swimSeed ^ (UInt64(i) << 32) ^ UInt64(node.restarts)))
        node.downUntil = nil
        nodes[i] = node
        let seeds = nodes.filter { $0.index != i }.map(\.gossipAddress)
        let out = nodes[i].swim!.join(seeds: seeds, now: now)
        perform(out, at: i)
    }

    // MARK: Faults

    private mutating func injectFaults() {
        let perTick = Double(Self.tick.simulatorMillis) / 60_000
        let n = nodes.count
        if partitionEndsAt == nil && faultRNG.chance(profile.partitionsPerMinute * perTick) {
            if n >= 3 && faultRNG.chance(0.3) {
                var pairs = (0..<n).flatMap { a in ((a + 1)..<n).map { (a, $0) } }
                pairs.shuffle(using: &faultRNG)
                let links = Array(pairs.prefix(Int.random(in: 1...max(1, pairs.count / 2), using: &faultRNG)))
                network.cut(links)
                record(1, links.flatMap { [UInt64($0.0), UInt64($0.1)] })
                note("links cut: \(links.map { "\(nodes[$0.0].name)–\(nodes[$0.1].name)" }.joined(separator: ", "))")
            } else {
                let groups = n >= 4 && faultRNG.chance(0.3) ? 3 : 2
                var sides = (0..<n).map { _ in Int.random(in: 0..<groups, using: &faultRNG) }
                if !sides.contains(where: { $0 != sides[0] }) { sides[Int.random(in: 0..<n, using: &faultRNG)] ^= 1 }
                network.partition(into: sides)
                record(1, sides.map(UInt64.init))
                note("partition \(sides)")
            }
            let length = Duration.milliseconds(Int64.random(in: 2_000...20_000, using: &faultRNG))
            partitionEndsAt = now + length
            report.partitions += 1
            note("… for \(Options.seconds(length)) s")
            for slot in connections.indices where connections[slot] != nil {
                let c = connections[slot]!
                if !network.connects(c.ends[0], c.ends[1]) { dropConnection(slot, reason: "partition") }
            }
        }
        let down = nodes.count { !$0.isUp }
        if down < max(1, (n - 1) / 2) && faultRNG.chance(profile.crashesPerMinute * perTick) {
            let up = nodes.indices.filter { nodes[$0].isUp }
            crash(up[Int.random(in: 0..<up.count, using: &faultRNG)])
        }
        if faultRNG.chance(profile.clockJumpsPerMinute * perTick) {
            let steady = nodes.indices.filter { nodes[$0].jumpEndsAt == nil }
            if !steady.isEmpty {
                let i = steady[Int.random(in: 0..<steady.count, using: &faultRNG)]
                let jump =
                    faultRNG.chance(0.6)
                    ? Int64.random(in: 1...2_000, using: &faultRNG) : -Int64.random(in: 1...1_000, using: &faultRNG)
                let length = Duration.milliseconds(Int64.random(in: 500...5_000, using: &faultRNG))
                nodes[i].jumpMillis = jump
                nodes[i].jumpEndsAt = now + length
                report.clockJumps += 1
                record(2, [UInt64(i), UInt64(bitPattern: jump)])
                note("\(nodes[i].name) clock jumps \(jump) ms for \(Options.seconds(length)) s")
            }
        }
    }

    private mutating func endFaults() {
        if let end = partitionEndsAt, now >= end {
            network.heal()
            partitionEndsAt = nil
            record(3, [])
            note("partition heals")
        }
        for i in nodes.indices {
            if let until = nodes[i].downUntil, now >= until { restart(i) }
            if let end = nodes[i].jumpEndsAt, now >= end {
                nodes[i].jumpMillis = 0
                nodes[i].jumpEndsAt = nil
                record(4, [UInt64(i)])
                note("\(nodes[i].name) clock back")
            }
        }
    }

    /// Ends every fault at once and calms the network: the liveness phase starts.
    private mutating func heal() {
        network.conditions = .calm
        if partitionEndsAt != nil { partitionEndsAt = now }
        for i in nodes.indices {
            if nodes[i].downUntil != nil { nodes[i].downUntil = now }
            if nodes[i].jumpEndsAt != nil { nodes[i].jumpEndsAt = now }
        }
        endFaults()
        note("healed")
    }

    private mutating func crash(_ i: Int) {
        let downtime = Duration.milliseconds(Int64.random(in: 500...10_000, using: &faultRNG))
        report.crashes += 1
        record(5, [UInt64(i)])
        note("\(nodes[i].name) crashes for \(Options.seconds(downtime)) s")
        for slot in connections.indices where connections[slot]?.side(of: i) != nil {
            dropConnection(slot, reason: "crash")
        }
        report.datagramsDropped += network.discardDatagrams(to: i)
        nodes[i].incarnation = nodes[i].swim?.localMember.incarnation ?? nodes[i].incarnation
        nodes[i].swim = nil
        nodes[i].downUntil = now + downtime
    }

    /// Comes back with the log and the clock bound; SWIM and sync start over; the view is
    /// rebuilt from the log, and must equal the one folded incrementally before the crash.
    private mutating func restart(_ i: Int) {
        nodes[i].restarts += 1
        record(6, [UInt64(i)])
        note("\(nodes[i].name) restarts")
        var hlc = HybridLogicalClock()
        hlc.advance(toAtLeast: nodes[i].clockBound)
        nodes[i].hlc = hlc
        do {
            let replayed = try nodes[i].replayedView()
            if ViewCodec.encode(replayed) != ViewCodec.encode(nodes[i].view) {
                fail(
                    "replay",
                    "\(nodes[i].name) rebuilt a view from its log that differs from the one it folded incrementally")
            }
            nodes[i].view = replayed
        } catch {
            fail("replay", "\(nodes[i].name) cannot decode its own log: \(error)")
        }
        boot(i)
    }

    // MARK: Membership

    private mutating func deliverDatagrams() {
        for d in network.takeDue(now: now) {
            guard nodes[d.to].isUp, network.connects(d.from, d.to) else {
                report.datagramsDropped += 1
                continue
            }
            let message: SWIM.Message
            do {
                message = try SWIMCodec.decode(d.bytes)
            } catch {
                fail("wire", "SWIMCodec cannot decode a datagram from \(nodes[d.from].name): \(error)")
                continue
            }
            report.datagramsDelivered += 1
            record(7, [UInt64(d.from), UInt64(d.to)], d.bytes)
            let out = nodes[d.to].swim!.onMessage(message, fromAddress: nodes[d.from].gossipAddress, now: now)
            perform(out, at: d.to)
        }
    }

    private mutating func tickMembership() {
        for i in nodes.indices where nodes[i].isUp {
            let out = nodes[i].swim!.onTick(now: now)
            perform(out, at: i)
        }
    }

    private mutating func perform(_ directives: [SWIM.Directive], at i: Int) {
        for directive in directives {
            switch directive {
            case .send(let message, let address):
                let bytes = SWIMCodec.encode(message)
                if bytes.count > swimSettings.maxPacketSize {
                    fail(
                        "wire",
                        "\(nodes[i].name) sent a \(bytes.count)-byte datagram (limit \(swimSettings.maxPacketSize))")
                }
                guard let to = addresses[address] else {
                    fail("wire", "\(nodes[i].name) sent a datagram to unknown address \(address)")
                    continue
                }
                report.datagramsSent += 1
                let outcome = network.send(bytes, from: i, to: to, now: now, rng: &networkRNG)
                if outcome.dropped { report.datagramsDropped += 1 }
                if outcome.duplicated { report.datagramsDuplicated += 1 }
            case .statusChanged(let member, let previous):
                report.membershipChanges += 1
                note(
                    "\(nodes[i].name) sees \(member.name) \(member.status) #\(member.incarnation) (was \(previous.map { "\($0)" } ?? "unknown"))"
                )
                append(
                    .membershipChanged(
                        MembershipChanged(
                            node: member.name, state: member.status.memberState, incarnation: member.incarnation,
                            observer: nodes[i].name, address: member.apiAddress)),
                    at: i, acknowledged: true)
            }
        }
    }

    // MARK: Sync connections

    private func slot(_ a: Int, _ b: Int) -> Int { a * nodes.count + b }

    /// Opens the connections whose conditions hold and drops those whose conditions broke.
    private mutating func maintainConnections() {
        let n = nodes.count
        for a in 0..<n {
            for b in (a + 1)..<n {
                let s = slot(a, b)
                let wanted =
                    nodes[a].isUp && nodes[b].isUp && network.connects(a, b) && nodes[a].listsActive(nodes[b].name)
                    && nodes[b].listsActive(nodes[a].name)
                if connections[s] != nil && !wanted {
                    dropConnection(s, reason: "membership")
                } else if connections[s] == nil && wanted && (options.reconnect || !everConnected[s]) {
                    openConnection(s, a, b)
                }
            }
        }
    }

    private mutating func openConnection(_ s: Int, _ a: Int, _ b: Int) {
        nextConnectionID += 1
        connections[s] = SimulatedConnection(
            id: nextConnectionID, ends: [a, b],
            syncs: [
                PeerSync(localNode: nodes[a].name, settings: syncSettings),
                PeerSync(localNode: nodes[b].name, settings: syncSettings),
            ])
        everConnected[s] = true
        report.connectionsOpened += 1
        record(8, [UInt64(a), UInt64(b), nextConnectionID])
        note("connection #\(nextConnectionID) \(nodes[a].name)–\(nodes[b].name) opens")
        for side in 0..<2 {
            let node = nodes[[a, b][side]]
            do {
                let out = try connections[s]!.syncs[side].start(node.log)
                performSync(out, s, side, path: .control)
            } catch {
                fail("sync", "\(node.name) cannot start a sync connection: \(error)")
            }
        }
    }

    private mutating func dropConnection(_ s: Int, reason: String) {
        guard let c = connections[s] else { return }
        closedSyncCounters += c.syncs.map(\.counters)
        connections[s] = nil
        report.connectionsDropped += 1
        record(9, [c.id])
        note("connection #\(c.id) \(nodes[c.ends[0]].name)–\(nodes[c.ends[1]].name) drops (\(reason))")
    }

    private mutating func deliverSyncMessages() {
        for s in connections.indices where connections[s] != nil {
            for message in connections[s]!.takeDue(now: now) {
                guard connections[s] != nil else { break }
                deliverSync(message.bytes, s, message.toward, path: message.path)
            }
        }
    }

    private mutating func deliverSync(
        _ bytes: [UInt8], _ s: Int, _ side: Int, path incoming: SimulatedConnection.SyncPath
    ) {
        let c = connections[s]!
        let i = c.ends[side]
        let message: SyncMessage
        do {
            message = try SyncCodec.decode(bytes)
        } catch {
            fail("wire", "SyncCodec cannot decode a message to \(nodes[i].name): \(error)")
            return
        }
        if SyncCodec.encode(message) != bytes {
            fail("wire", "SyncCodec does not round-trip a \(Self.kind(message)) message to \(nodes[i].name)")
        }
        record(10, [c.id, UInt64(side)], bytes)
        do {
            let out = try connections[s]!.syncs[side].onMessage(
                message, nodes[i].log, now: now, nowMillis: nodes[i].physicalMillis(at: now))
            performSync(out, s, side, path: .repair, incoming: incoming)
        } catch {
            fail("sync", "\(nodes[i].name) failed on a \(Self.kind(message)) message: \(error)")
        }
    }

    private mutating func sendSync(
        _ message: SyncMessage, _ s: Int, from side: Int, path: SimulatedConnection.SyncPath
    ) {
        if !options.reconciliation, case .reconcile = message { return }
        let bytes = SyncCodec.encode(message)
        report.syncMessages += 1
        report.syncBytes += bytes.count
        let delay = network.delay(&networkRNG)
        connections[s]!.send(bytes, toward: 1 - side, now: now, delay: delay, path: path)
    }

    private mutating func performSync(
        _ outputs: [PeerSync.Output], _ s: Int, _ side: Int, path: SimulatedConnection.SyncPath,
        incoming: SimulatedConnection.SyncPath = .control
    ) {
        let i = connections[s]!.ends[side]
        for output in outputs {
            switch output {
            case .send(let message):
                sendSync(message, s, from: side, path: path)
            case .insert(let events):
                let committed = receive(events, at: i, path: incoming)
                do {
                    let acks = try connections[s]!.syncs[side].inserted(into: nodes[i].log)
                    performSync(acks, s, side, path: .control)
                } catch {
                    fail("sync", "\(nodes[i].name) cannot acknowledge an insert: \(error)")
                }
                if !committed.isEmpty { commit(committed, at: i) }
            }
        }
    }

    /// Hands newly committed events to every established connection of the node, as the
    /// store's commit feed does (`PeerSync` streams only the node's own).
    private mutating func commit(_ committed: [CommittedEvent], at i: Int) {
        for s in connections.indices {
            guard let side = connections[s]?.side(of: i), connections[s]!.syncs[side].peerNode != nil else { continue }
            let out = connections[s]!.syncs[side].onLocalCommit(committed)
            performSync(out, s, side, path: .stream)
        }
    }

    private mutating func tickSync() {
        for s in connections.indices where connections[s] != nil {
            for side in 0..<2 {
                guard let c = connections[s], c.syncs[side].peerNode != nil else { continue }
                let i = c.ends[side]
                do {
                    let out = try connections[s]!.syncs[side].onTick(
                        nodes[i].log, now: now, nowMillis: nodes[i].physicalMillis(at: now))
                    performSync(out, s, side, path: .control)
                    if connections[s]!.syncs[side].isCatchingUp,
                        let batch = try connections[s]!.syncs[side].nextCatchUpBatch(nodes[i].log)
                    {
                        sendSync(batch, s, from: side, path: .catchUp)
                    }
                } catch {
                    fail("sync", "\(nodes[i].name) failed on a sync tick: \(error)")
                }
            }
        }
    }

    // MARK: Events

    /// Inserts remote events the way the store's writer does: each timestamp goes through the
    /// HLC first, and one too far ahead is quarantined (not stored, clock untouched).
    private mutating func receive(
        _ events: [[UInt8]], at i: Int, path: SimulatedConnection.SyncPath
    ) -> [CommittedEvent] {
        var committed: [CommittedEvent] = []
        for bytes in events {
            let event: Event
            do {
                event = try EventCodec.decode(bytes)
            } catch {
                fail("wire", "\(nodes[i].name) received an undecodable event: \(error)")
                continue
            }
            if nodes[i].log.contains(event.id) {
                switch path {
                case .stream: report.eventsRedundantStreamed += 1
                case .catchUp: report.eventsRedundantCaughtUp += 1
                case .repair, .control: report.eventsRedundantRepaired += 1
                }
                continue
            }
            let before = nodes[i].hlc.last
            do {
                let observed = try nodes[i].hlc.receive(event.id.hlc, physicalMillis: nodes[i].physicalMillis(at: now))
                observe(observed, at: i)
            } catch {
                report.eventsQuarantined += 1
                nodes[i].quarantined.insert(event.id)
                if nodes[i].hlc.last != before {
                    fail(
                        "hlc",
                        "\(nodes[i].name) quarantined \(event.id) but its clock moved from \(before) to \(nodes[i].hlc.last)"
                    )
                }
                continue
            }
            do {
                try nodes[i].log.insert(bytes)
            } catch {
                fail("wire", "\(nodes[i].name) cannot insert \(event.id): \(error)")
                continue
            }
            nodes[i].view.apply(event)
            report.eventsDelivered += 1
            committed.append(CommittedEvent(event: event, bytes: bytes))
        }
        return committed
    }

    /// A local append: HLC → encode → insert → fold → stream.
    private mutating func append(_ payload: Event.Payload, at i: Int, acknowledged isAcknowledged: Bool) {
        let hlc = nodes[i].hlc.now(physicalMillis: nodes[i].physicalMillis(at: now))
        observe(hlc, at: i)
        let event = Event(id: EventID(hlc: hlc, origin: nodes[i].id), payload: payload)
        let bytes = EventCodec.encode(event)
        do {
            guard try nodes[i].log.insert(bytes) else {
                fail("hlc", "\(nodes[i].name) issued \(event.id) twice")
                return
            }
        } catch {
            fail("wire", "\(nodes[i].name) cannot insert its own event \(event.id): \(error)")
            return
        }
        nodes[i].view.apply(event)
        report.eventsAppended += 1
        if isAcknowledged { acknowledged.append(event.id) }
        record(11, [UInt64(i)], bytes)
        commit([CommittedEvent(event: event, bytes: bytes)], at: i)
    }

    /// Invariant 2: every timestamp a node issues or observes exceeds every earlier one,
    /// across jumps of its physical clock and across restarts.
    private mutating func observe(_ hlc: HLCTimestamp, at i: Int) {
        if hlc <= nodes[i].clockBound {
            fail("hlc", "\(nodes[i].name)'s clock went from \(nodes[i].clockBound) back to \(hlc)")
        }
        nodes[i].clockBound = max(nodes[i].clockBound, hlc)
    }

    private mutating func workload() {
        let expected = options.eventsPerSecond * Double(Self.tick.simulatorMillis) / 1000
        var count = Int(expected)
        if workloadRNG.chance(expected - Double(count)) { count += 1 }
        for _ in 0..<count {
            let up = nodes.indices.filter { nodes[$0].isUp }
            guard !up.isEmpty else { return }
            let i = up[Int.random(in: 0..<up.count, using: &workloadRNG)]
            let (payload, synced) = randomPayload(at: i)
            append(payload, at: i, acknowledged: synced)
        }
    }

    /// Mostly request traffic; now and then an operator or controller decision (synced).
    private mutating func randomPayload(at i: Int) -> (Event.Payload, synced: Bool) {
        appendSerial += 1
        let roll = Int.random(in: 0..<100, using: &workloadRNG)
        let key = "key-\(Int.random(in: 1...4, using: &workloadRNG))"
        let team = "vk:team-\(Int.random(in: 1...3, using: &workloadRNG))"
        let model = ["gpt-4o-mini", "claude-sonnet", "llama-70b"][Int.random(in: 0..<3, using: &workloadRNG)]
        let windowStart = nodes[i].physicalMillis(at: now) / 60_000 * 60_000
        switch roll {
        case 0..<62:
            return (
                .rateLimitIncrement(
                    RateLimitIncrement(
                        keys: [team, "pk:\(key)", "pm:\(model)"], windowStartMillis: windowStart, windowMillis: 60_000,
                        requests: UInt32.random(in: 1...3, using: &workloadRNG))), false
            )
        case 62..<94:
            let outcome = UsageOutcome.allCases[Int.random(in: 0..<UsageOutcome.allCases.count, using: &workloadRNG)]
            return (
                .usageRecorded(
                    UsageRecorded(
                        requestID: "req-\(nodes[i].name)-\(appendSerial)", keyID: key, model: model,
                        limitKeys: [team, "pk:\(key)"], windowStartMillis: windowStart, windowMillis: 60_000,
                        tokensIn: UInt32.random(in: 1...4_000, using: &workloadRNG),
                        tokensOut: UInt32.random(in: 1...2_000, using: &workloadRNG),
                        latencyMicros: UInt32.random(in: 50_000...9_000_000, using: &workloadRNG),
                        status: outcome == .success ? 200 : 502, outcome: outcome)), false
            )
        case 94..<98:
            let weights = [0.0, 0.25, 0.5, 1, 2]
            return (
                .weightChanged(
                    WeightChanged(
                        keyID: key, oldWeight: weights[Int.random(in: 0..<5, using: &workloadRNG)],
                        newWeight: weights[Int.random(in: 0..<5, using: &workloadRNG)], reason: "simulated",
                        actor: "controller:\(nodes[i].name)")), true
            )
        default:
            let document = "{\"revision\": \(appendSerial), \"by\": \"\(nodes[i].name)\"}"
            return (.configUpdated(ConfigUpdated(document: Array(document.utf8), author: "operator:sim")), true)
        }
    }

    // MARK: Reconciliation against ground truth

    /// Runs a reconciliation directly between two logs, every round through `SyncCodec`, and
    /// returns what each side found missing at itself (indexed like `[a, b]`).
    private mutating func exchange(
        _ a: Int, _ b: Int, window: Reconciliation.Window
    ) throws -> [Set<EventID>] {
        let ends = [a, b]
        var missing: [Set<EventID>] = [[], []]
        var items = try Reconciliation.start(nodes[a].log.set, window: window)
        var turn = 1
        var rounds = 0
        while !items.isEmpty {
            rounds += 1
            if rounds > 64 {
                fail(
                    "reconciler",
                    "reconciliation between \(nodes[a].name) and \(nodes[b].name) did not finish in 64 rounds")
                break
            }
            let wire = SyncCodec.encode(.reconcile(session: UInt64(rounds), window: window, items: items))
            guard case .reconcile(_, let decodedWindow, let decoded) = try SyncCodec.decode(wire),
                decodedWindow == window, decoded == items
            else {
                fail("wire", "SyncCodec does not round-trip reconciliation items")
                break
            }
            let step = try Reconciliation.respond(to: decoded, nodes[ends[turn]].log.set, window: window)
            missing[turn].formUnion(step.missingHere)
            missing[1 - turn].formUnion(step.missingThere)
            items = step.reply
            turn = 1 - turn
        }
        report.reconcilerChecks += 1
        return missing
    }

    /// Compares a direct reconciliation with the true set difference within the window.
    /// Returns the number of events the reconciler found missing.
    @discardableResult
    private mutating func checkReconciler(_ a: Int, _ b: Int, window: Reconciliation.Window, context: String) -> Int {
        let found: [Set<EventID>]
        do {
            found = try exchange(a, b, window: window)
        } catch {
            fail("reconciler", "\(context): reconciliation threw \(error)")
            return 0
        }
        let ids = [nodes[a].log.set.ids, nodes[b].log.set.ids]
        for side in 0..<2 {
            let truth = ids[1 - side].subtracting(ids[side]).filter { window.covers($0.hlc) }
            if found[side] != truth {
                let name = nodes[[a, b][side]].name
                fail(
                    "reconciler",
                    "\(context): reconciling \(nodes[a].name) with \(nodes[b].name) over [\(window.compactedBefore), \(window.settledBefore)) found "
                        + "\(found[side].count) events missing at \(name), the truth is \(truth.count); "
                        + "not found: \(Self.sample(truth.subtracting(found[side]))), "
                        + "wrongly found: \(Self.sample(found[side].subtracting(truth)))")
            }
        }
        return found[0].count + found[1].count
    }

    /// Invariant 4 during the safety phase: a random pair, a window that varies around the
    /// production one (sometimes with a compacted tail), so bucket edges land everywhere.
    private mutating func checkReconcilerSample() {
        let n = nodes.count
        let a = Int.random(in: 0..<n, using: &checkRNG)
        var b = Int.random(in: 0..<(n - 1), using: &checkRNG)
        if b >= a { b += 1 }
        let nowMillis = nodes[a].physicalMillis(at: now) - UInt64.random(in: 0...3_000, using: &checkRNG)
        var window = Reconciliation.Window.at(
            nowMillis: nowMillis, maxClockOffsetMillis: syncSettings.maxClockOffsetMillis,
            marginMillis: syncSettings.settleMarginMillis)
        if checkRNG.chance(0.3) {
            let horizon = nowMillis - UInt64.random(in: 3_000...40_000, using: &checkRNG)
            window.compactedBefore = HLCTimestamp(
                wallMillis: horizon, logical: UInt16.random(in: 0...3, using: &checkRNG))
        }
        checkReconciler(a, b, window: window, context: "at \(Options.seconds(now)) s")
        auditStore(a, nowMillis: nowMillis)
    }

    /// The indexes `PeerSync` reads through must answer exactly as the `InMemoryEventSet`.
    private mutating func auditStore(_ i: Int, nowMillis: UInt64) {
        var floors: [NodeID: HLCTimestamp] = [:]
        for node in nodes where checkRNG.chance(0.6) {
            floors[node.id] = HLCTimestamp(
                wallMillis: nowMillis - UInt64.random(in: 0...30_000, using: &checkRNG), logical: 0)
        }
        let from = HLCTimestamp(wallMillis: nowMillis - UInt64.random(in: 0...30_000, using: &checkRNG), logical: 0)
        let range =
            from..<HLCTimestamp(
                wallMillis: from.wallMillis + UInt64.random(in: 1...5_000, using: &checkRNG), logical: 0)
        let limit = Int.random(in: 1...64, using: &checkRNG)
        if let problem = nodes[i].log.audit(floors: floors, limit: limit, range: range) {
            fail("store", "\(nodes[i].name)'s log index disagrees with its InMemoryEventSet: \(problem)")
        }
    }

    // MARK: Final checks

    private func isConverged() -> Bool {
        guard nodes.allSatisfy(\.isUp) else { return false }
        let root = nodes[0].log.fingerprint(.root)
        guard nodes.allSatisfy({ $0.log.fingerprint(.root) == root }) else { return false }
        return nodes.allSatisfy { node in
            nodes.allSatisfy { $0.index == node.index || node.swim?.member(named: $0.name)?.status == .alive }
        }
    }

    /// Invariant 1: identical event sets, root fingerprints and views; views equal a replay.
    private mutating func checkConvergence() {
        var all = Set<EventID>()
        for node in nodes { all.formUnion(node.log.set.ids) }
        let views = nodes.map { ViewCodec.encode($0.view) }
        // Fingerprint and view of the complete log, from the first node that has it.
        let complete = nodes.first { $0.log.count == all.count }
        for node in nodes {
            let missing = all.subtracting(node.log.set.ids)
            if !missing.isEmpty {
                let quarantined = missing.intersection(node.quarantined).count
                let origins = Set(missing.map(\.origin)).map { o in nodes.first { $0.id == o }?.name ?? o.hex }.sorted()
                fail(
                    "convergence",
                    "\(node.name) lacks \(missing.count) of \(all.count) events (from \(origins.joined(separator: ", ")); "
                        + "\(quarantined) of them were quarantined there): \(Self.sample(missing))")
            } else if let complete {
                if node.log.fingerprint(.root) != complete.log.fingerprint(.root) {
                    fail(
                        "convergence", "\(node.name)'s root fingerprint differs from \(complete.name)'s with equal ids")
                }
                if views[node.index] != views[complete.index] {
                    fail("convergence", "\(node.name)'s view differs from \(complete.name)'s with equal ids")
                }
            }
            do {
                if ViewCodec.encode(try node.replayedView()) != views[node.index] {
                    fail("convergence", "\(node.name)'s incrementally folded view differs from a replay of its log")
                }
            } catch {
                fail("convergence", "\(node.name) cannot replay its log: \(error)")
            }
        }
    }

    /// Invariant 3: no acknowledged (synced) event is missing anywhere.
    private mutating func checkAcknowledged() {
        report.eventsAcknowledged = acknowledged.count
        for node in nodes {
            let lost = acknowledged.filter { !node.log.contains($0) }
            if !lost.isEmpty {
                fail(
                    "acknowledged",
                    "\(node.name) lacks \(lost.count) of \(acknowledged.count) acknowledged events: "
                        + "\(Self.sample(Set(lost)))")
            }
        }
    }

    /// Invariant 4 at the end: every pair's reconciliation at the final time finds nothing.
    private mutating func checkFinalReconciliation() {
        for a in nodes.indices {
            for b in nodes.indices where b > a {
                let window = Reconciliation.Window.at(
                    nowMillis: nodes[a].physicalMillis(at: now),
                    maxClockOffsetMillis: syncSettings.maxClockOffsetMillis,
                    marginMillis: syncSettings.settleMarginMillis)
                let found = checkReconciler(a, b, window: window, context: "final")
                if found > 0 {
                    fail(
                        "convergence",
                        "the final reconciliation of \(nodes[a].name) with \(nodes[b].name) finds \(found) events missing"
                    )
                }
            }
        }
    }

    /// Invariant 5: after healing every node sees every other alive.
    private mutating func checkMembership() {
        for node in nodes {
            guard let swim = node.swim else {
                fail("membership", "\(node.name) is still down after healing")
                continue
            }
            let wrong = nodes.filter { $0.index != node.index && swim.member(named: $0.name)?.status != .alive }
            if !wrong.isEmpty {
                let views = wrong.map {
                    "\($0.name) \(swim.member(named: $0.name).map { "\($0.status)" } ?? "unknown")"
                }
                fail("membership", "\(node.name) sees \(views.joined(separator: ", ")) after healing")
            }
        }
    }

    private mutating func finish() -> Report {
        var counters = closedSyncCounters
        for c in connections.compactMap({ $0 }) { counters += c.syncs.map(\.counters) }
        report.reconciliations = counters.reduce(0) { $0 + $1.reconciliations }
        report.eventsRepaired = counters.reduce(0) { $0 + $1.eventsRepaired }
        report.virtualMillis = now.simulatorMillis
        if failureCount > Self.maxFailures {
            report.failures.append(
                "… and \(failureCount - Self.maxFailures) more failures (replay: \(options.replayCommand))")
        }
        report.passed = failureCount == 0
        let digest = Array(traceHasher.finalize())
        report.traceHash = digest.prefix(8).reduce(0) { $0 << 8 | UInt64($1) }
        report.trace = traceLog.lines
        return report
    }

    // MARK: Recording

    private mutating func fail(_ invariant: String, _ detail: String) {
        failureCount += 1
        guard failureCount <= Self.maxFailures else { return }
        let at = Options.seconds(now)
        report.failures.append(
            "seed \(options.seed): \(invariant) invariant broken at \(at) s: \(detail). Replay: \(options.replayCommand)"
        )
        note("FAIL \(invariant): \(detail)")
    }

    /// Feeds the trace hash: a record tag, the time, some numbers and optionally bytes.
    private mutating func record(_ tag: UInt8, _ values: [UInt64], _ bytes: [UInt8] = []) {
        var header: [UInt8] = [tag]
        for v in [UInt64(bitPattern: now.simulatorMillis)] + values + [UInt64(bytes.count)] {
            withUnsafeBytes(of: v.bigEndian) { header += $0 }
        }
        traceHasher.update(data: header)
        if !bytes.isEmpty { traceHasher.update(data: bytes) }
    }

    /// Adds a line to the human-readable trace (built only when one is kept).
    private func note(_ line: @autoclosure () -> String) {
        guard traceLog.capacity > 0 else { return }
        traceLog.append("\(Options.seconds(now))s \(line())")
    }

    /// The last lines of the trace. A reference, so that noting a line never conflicts with
    /// the mutation in progress.
    private final class TraceLog {
        let capacity: Int
        private(set) var lines: [String] = []

        init(capacity: Int) { self.capacity = capacity }

        func append(_ line: String) {
            if lines.count >= capacity { lines.removeFirst(lines.count - capacity + 1) }
            lines.append(line)
        }
    }

    private static func sample(_ ids: Set<EventID>) -> String {
        let sorted = ids.sorted()
        let shown = sorted.prefix(3).map { "\($0.hlc)@\($0.origin.hex.prefix(6))" }.joined(separator: ", ")
        return sorted.count > 3 ? "[\(shown), …]" : "[\(shown)]"
    }

    private static func kind(_ message: SyncMessage) -> String {
        switch message {
        case .hello: "hello"
        case .events: "events"
        case .ack: "ack"
        case .reconcile: "reconcile"
        case .fetch: "fetch"
        }
    }
}
