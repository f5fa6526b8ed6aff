import ArgumentParser
import EventLog
import Foundation
import Replication
import ToolSupport

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

struct ReplicationBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replication",
        abstract: "Propagation, catch-up, reconciliation and failure detection of a real local cluster.",
        discussion: """
            Starts --nodes real `bifrost serve` processes on 127.0.0.1 (the bifrost binary next to this one),
            then measures: propagation latency p50/p99 while node 1 writes --rate events/s for --seconds;
            the time a node that was stopped while --events were written takes to hold them all after
            it restarts; reconciliation messages and bytes between two real logs with 0, 1,000 recent
            and 1,000 scattered differences; and the time until the others declare a SIGKILLed node
            dead (seed defaults: gossip.interval 1s, detection_threshold 3). Removes its data after.
            """)

    @Option(help: "Cluster size.")
    var nodes: Int = 3

    @Option(help: "Events node 1 has to write while the last node is down (the catch-up test).")
    var events: Int = 1_000_000

    @Option(help: "Events per second node 1 writes during the propagation test.")
    var rate: Int = 5_000

    @Option(help: "Length of the propagation test in seconds.")
    var seconds: Int = 10

    @Flag(help: "Print one JSON object.")
    var json = false

    func validate() throws {
        guard nodes >= 2 else { throw ValidationError("--nodes must be at least 2") }
        guard rate > 0, seconds > 0, events > 0 else {
            throw ValidationError("--rate, --seconds and --events must be positive")
        }
    }

    func run() async throws {
        let bin = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        let cluster = try LocalCluster(size: nodes, bin: bin)
        defer { cluster.destroy() }
        var result: [String: JSONValue] = ["nodes": .uint(UInt64(nodes))]

        try cluster.startAll()
        guard await cluster.waitAllAlive(timeout: .seconds(30)) else { throw ValidationError("cluster did not form") }

        // 1. Propagation at a steady rate.
        let perTick = max(1, rate / 100)
        let start = ContinuousClock.now
        var written = 0
        while ContinuousClock.now - start < .seconds(seconds) {
            let due = start + .milliseconds(Int64(written / perTick) * 10)
            if ContinuousClock.now < due { try await Task.sleep(until: due, clock: .continuous) }
            _ = try await cluster.post(0, "/debug/events?count=\(perTick)")
            written += perTick
        }
        let achieved = Double(written) / (ContinuousClock.now - start).seconds
        try await Task.sleep(for: .seconds(1))
        var p50: [Double] = []
        var p99: [Double] = []
        for i in 1..<nodes {
            let m = try await cluster.getJSON(i, "/cluster/metrics")["cluster_metrics"] as? [String: Any] ?? [:]
            p50.append((m["event_propagation_p50_ms"] as? NSNumber)?.doubleValue ?? -1)
            p99.append((m["event_propagation_p99_ms"] as? NSNumber)?.doubleValue ?? -1)
        }
        result["propagation_rate_events_per_s"] = .double(achieved.rounded())
        result["propagation_p50_ms"] = .double(p50.max() ?? -1)
        result["propagation_p99_ms"] = .double(p99.max() ?? -1)
        log("propagation at \(Int(achieved)) events/s: p50 \(p50) ms, p99 \(p99) ms")

        // 2. Catch-up of a node that missed `events` events.
        let last = nodes - 1
        await cluster.terminate(last)
        var remaining = events
        while remaining > 0 {
            let n = min(100_000, remaining)
            _ = try await cluster.post(0, "/debug/events?count=\(n)")
            remaining -= n
        }
        let target = try await cluster.logSummary(0)
        try cluster.start(last)
        let restarted = ContinuousClock.now
        let caughtUp = await cluster.eventually(.seconds(300)) {
            let s = try await cluster.logSummary(last)
            return (s["events"] as? NSNumber)?.intValue ?? 0 >= (target["events"] as? NSNumber)?.intValue ?? .max
        }
        let catchUp = (ContinuousClock.now - restarted).seconds
        result["catch_up_events"] = .uint(UInt64(events))
        result["catch_up_seconds"] = caughtUp ? .double((catchUp * 100).rounded() / 100) : .null
        log("catch-up of \(events) events: \(caughtUp ? String(format: "%.2f s", catchUp) : "did not finish")")

        // 3. Failure detection with the seed's defaults.
        await cluster.stopAll()
        cluster.config = "{}"
        try cluster.startAll()
        guard await cluster.waitAllAlive(timeout: .seconds(30)) else {
            throw ValidationError("cluster did not re-form")
        }
        cluster.kill9(last)
        let killed = ContinuousClock.now
        let detected = await cluster.eventually(.seconds(60), poll: .milliseconds(50)) {
            let members = try await cluster.getJSON(0, "/cluster/nodes")["nodes"] as? [[String: Any]] ?? []
            return members.contains {
                $0["node_id"] as? String == cluster.name(last) && $0["status"] as? String == "dead"
            }
        }
        let detection = (ContinuousClock.now - killed).seconds
        result["detection_seconds"] = detected ? .double((detection * 100).rounded() / 100) : .null
        log("killed node declared dead after \(String(format: "%.2f", detection)) s")
        await cluster.stopAll()

        // 4. Reconciliation between two real logs.
        for (label, recon) in try await Self.reconciliationCases(root: cluster.root) {
            result["reconcile_\(label)_messages"] = .uint(UInt64(recon.messages))
            result["reconcile_\(label)_bytes"] = .uint(UInt64(recon.bytes))
            result["reconcile_\(label)_round_trips"] = .double(Double(recon.messages) / 2)
            log("reconcile \(label): \(recon.messages) messages, \(recon.bytes) bytes")
        }
        let out = JSONValue.object(result)
        ToolSupport.printLine(out.rendered(pretty: !json))
    }

    func log(_ s: String) {
        if !json { FileHandle.standardError.write(Data((s + "\n").utf8)) }
    }

    struct Recon {
        var messages = 0
        var bytes = 0
    }

    /// Two stores with a shared base of 100,000 events over a day, then the differences.
    static func reconciliationCases(root: String) async throws -> [(String, Recon)] {
        let now = SystemWallClock().nowMillis()
        var gen = SyntheticEvents(seed: 7)
        var rng = SplitMix64(seed: 11)
        func event(_ wall: UInt64, _ logical: UInt16, _ origin: String) -> [UInt8] {
            EventCodec.encode(
                Event(
                    id: EventID(hlc: HLCTimestamp(wallMillis: wall, logical: logical), origin: NodeID(name: origin)),
                    payload: gen.counterPayload(nowMillis: wall)))
        }
        var base: [[UInt8]] = []
        for i in 0..<100_000 {
            base.append(
                event(now - 10_000 - UInt64.random(in: 0..<86_400_000, using: &rng), UInt16(i % 1000), "n\(i % 3)"))
        }
        var cases: [(String, Recon)] = []
        for (label, count, span) in [
            ("0", 0, UInt64(0)), ("1000_recent", 1000, 300_000), ("1000_scattered", 1000, 86_400_000),
        ] {
            let dir = "\(root)/recon-\(label)"
            let a = try EventStore.open(directory: dir + "/a", nodeName: "a")
            let b = try EventStore.open(directory: dir + "/b", nodeName: "b")
            _ = try await a.insert(encoded: base)
            _ = try await b.insert(encoded: base)
            let extra = (0..<count).map { i in
                event(now - 10_000 - UInt64.random(in: 0..<max(1, span), using: &rng), UInt16(i), "x")
            }
            _ = try await a.insert(encoded: extra)
            var r = Recon()
            let window = Reconciliation.Window.at(nowMillis: now)
            var message = try Reconciliation.start(a.reader, window: window)
            var atB = true
            while !message.isEmpty {
                r.messages += 1
                r.bytes += SyncCodec.encode(.reconcile(session: 1, window: window, items: message)).count
                let step = try Reconciliation.respond(to: message, atB ? b.reader : a.reader, window: window)
                if !step.missingHere.isEmpty {
                    r.bytes += SyncCodec.encode(.fetch(session: 1, ids: step.missingHere)).count
                }
                message = step.reply
                atB.toggle()
            }
            try await a.close()
            try await b.close()
            cases.append((label, r))
        }
        return cases
    }
}

/// Real `bifrost serve` processes for the benchmark.
final class LocalCluster: @unchecked Sendable {
    let root: String
    let bin: URL
    let size: Int
    let apiBase: Int
    let gossipBase: Int
    let key = Keyring.generateKeyBase64()
    var config =
        #"{"cluster": {"gossip": {"interval": "200ms", "timeout": "1s"}, "failover": {"detection_threshold": 2}}}"#
    private var processes: [Int: Process] = [:]

    /// `tag` tells apart the data directories of clusters that run side by side.
    init(size: Int, bin: URL, tag: String = "", apiBase: Int = Int.random(in: 21_000...30_000)) throws {
        self.size = size
        self.bin = bin
        root = FileManager.default.temporaryDirectory.appendingPathComponent("bifrost-bench-\(getpid())\(tag)").path
        try? FileManager.default.removeItem(atPath: root)
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        self.apiBase = apiBase
        gossipBase = apiBase + 10_000
    }

    func name(_ i: Int) -> String { "bench-node-\(i + 1)" }

    func start(_ i: Int) throws {
        try Data(config.utf8).write(to: URL(fileURLWithPath: root + "/config.json"))
        let p = Process()
        p.executableURL = bin.appendingPathComponent("bifrost")
        let peers = (0..<size).filter { $0 != i }.map { "127.0.0.1:\(apiBase + $0)" }.joined(separator: ",")
        p.arguments = [
            "serve", "--cluster", "--config", root + "/config.json", "--node-id", name(i), "--bind",
            "127.0.0.1:\(apiBase + i)",
            "--gossip-port", "\(gossipBase + i)", "--peers", peers, "--data", "\(root)/\(name(i))",
            "--enable-fault-injection",
            "--log-level", "warning",
        ]
        var env = ProcessInfo.processInfo.environment
        env["BIFROST_CLUSTER_KEY"] = key
        p.environment = env
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try p.run()
        processes[i] = p
    }

    func startAll() throws { for i in 0..<size { try start(i) } }

    func terminate(_ i: Int) async {
        guard let p = processes[i], p.isRunning else { return }
        kill(p.processIdentifier, SIGTERM)
        let deadline = ContinuousClock.now + .seconds(20)
        while p.isRunning && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(50)) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
    }

    func pid(_ i: Int) -> Int32? { processes[i].map(\.processIdentifier) }

    func kill9(_ i: Int) {
        guard let p = processes[i], p.isRunning else { return }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
    }

    func stopAll() async { for i in 0..<size { await terminate(i) } }

    func destroy() {
        for p in processes.values where p.isRunning {
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: root)
    }

    func request(_ i: Int, _ method: String, _ path: String) async throws -> Data {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(apiBase + i)\(path)")!)
        request.httpMethod = method
        request.timeoutInterval = 120
        return try await URLSession.shared.data(for: request).0
    }

    func post(_ i: Int, _ path: String) async throws -> Data { try await request(i, "POST", path) }

    func getJSON(_ i: Int, _ path: String) async throws -> [String: Any] {
        (try JSONSerialization.jsonObject(with: try await request(i, "GET", path)) as? [String: Any]) ?? [:]
    }

    func logSummary(_ i: Int) async throws -> [String: Any] { try await getJSON(i, "/cluster/log") }

    func waitAllAlive(timeout: Duration) async -> Bool {
        await eventually(timeout) {
            for i in 0..<size {
                let nodes = try await getJSON(i, "/cluster/nodes")["nodes"] as? [[String: Any]] ?? []
                if nodes.count != size || nodes.contains(where: { $0["status"] as? String != "alive" }) { return false }
            }
            return true
        }
    }

    func eventually(
        _ timeout: Duration, poll: Duration = .milliseconds(100), _ condition: () async throws -> Bool
    ) async
        -> Bool
    {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if (try? await condition()) == true { return true }
            try? await Task.sleep(for: poll)
        }
        return false
    }
}
