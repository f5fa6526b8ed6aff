import ArgumentParser
import EventLog
import Foundation

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// A cluster at a fixed request rate with a short retention horizon, for as long as asked:
/// every node's `data.mdb`, live log bytes, RSS and open descriptors sampled over the run. After
/// two horizons compaction keeps up with the traffic, so the file and the memory stop growing;
/// at the end the load stops and the nodes must agree on their root digest.
struct SoakBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "soak",
        abstract:
            "Run a cluster at a fixed request rate with a short retention horizon; sample disk, memory and descriptors.",
        discussion: """
            Starts the mock provider and --nodes `bifrost serve` processes on loopback, sends --rate
            chat completions a second spread over the nodes for --minutes, and every --sample
            seconds records per node: data.mdb bytes, live log bytes (the file less LMDB's free
            list), RSS, open descriptors and events. Then it stops the load, waits for the nodes'
            root digests to agree, and reports the growth of each node after two horizons and the
            bytes per request the log keeps (`make soak` writes bench/out/soak.json and a chart).
            """)

    @Option(help: "Nodes in the cluster.")
    var nodes = 3

    @Option(help: "Minutes of load (fractions allowed).")
    var minutes = 20.0

    @Option(help: "Requests per second over the whole cluster.")
    var rate = 200

    @Option(help: "retention.horizon of every node.")
    var horizon = "1m"

    @Option(help: "retention.interval of every node.")
    var interval = "5s"

    @Option(help: "Seconds between samples.")
    var sample = 10.0

    @Flag(help: "Print one JSON object.")
    var json = false

    struct Sample {
        var seconds: Double
        var node: Int
        var fileBytes: UInt64
        var liveBytes: UInt64
        var rssBytes: UInt64
        var descriptors: Int
        var events: UInt64
    }

    func run() async throws {
        guard let horizonDuration = Self.duration(horizon) else {
            throw ValidationError("--horizon: expected a duration like 1m or 90s, got '\(horizon)'")
        }
        guard nodes >= 1, rate >= 1, minutes > 0, sample >= 1 else {
            throw ValidationError("--nodes, --rate, --minutes and --sample must be positive (--sample at least 1)")
        }
        let bin = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        let mockPort = Int.random(in: 17_000...17_999)
        let mock = try GatewayBench.launch(
            bin.appendingPathComponent("bifrost-mock-provider"), ["--port", "\(mockPort)"])
        defer {
            kill(mock.processIdentifier, SIGKILL)
            mock.waitUntilExit()
        }
        guard await GatewayBench.waitHTTP("http://127.0.0.1:\(mockPort)/health") else {
            throw ValidationError("the mock provider did not start")
        }
        let cluster = try LocalCluster(size: nodes, bin: bin)
        cluster.config = """
            {"providers": {"openai": {"type": "openai", "base_url": "http://127.0.0.1:\(mockPort)/v1",
               "keys": [{"name": "soak-key-1", "value": "sk-soak-upstream-1", "models": ["gpt-4o-mini"]},
                        {"name": "soak-key-2", "value": "sk-soak-upstream-2", "models": ["gpt-4o-mini"]}]}},
             "virtual_keys": [{"name": "soak-team", "value": "sk-soak-team", "models": ["*"], "limits": {"rpm": 100000000}}],
             "retention": {"horizon": "\(horizon)", "interval": "\(interval)"},
             "cluster": {"gossip": {"interval": "500ms", "timeout": "2s"}}}
            """
        defer { cluster.destroy() }
        try cluster.startAll()
        guard await cluster.waitAllAlive(timeout: .seconds(60)) else {
            throw ValidationError("the \(nodes)-node cluster did not form")
        }

        let load = SteadyLoad(
            urls: (0..<nodes).map { "http://127.0.0.1:\(cluster.apiBase + $0)/v1/chat/completions" },
            token: "sk-soak-team", rate: rate)
        let started = ContinuousClock.now
        let length = Duration.seconds(minutes * 60)
        load.start()
        var samples: [Sample] = []
        var next = started
        while ContinuousClock.now - started < length {
            let t = (ContinuousClock.now - started) / .seconds(1)
            for i in 0..<nodes { samples.append(try await measure(cluster, i, at: t)) }
            if !json {
                let line = (0..<nodes).map { i -> String in
                    let s = samples[samples.count - nodes + i]
                    return
                        "n\(i + 1) file \(s.fileBytes >> 10) KiB live \(s.liveBytes >> 10) KiB rss \(s.rssBytes >> 20) MiB fds \(s.descriptors)"
                }.joined(separator: " | ")
                FileHandle.standardError.write(Data("t=\(Int(t))s served \(load.outcome.ok): \(line)\n".utf8))
            }
            next += .seconds(sample)
            try? await Task.sleep(until: next, clock: .continuous)
        }
        let outcome = await load.stop()
        let elapsed = (ContinuousClock.now - started) / .seconds(1)
        for i in 0..<nodes { samples.append(try await measure(cluster, i, at: elapsed)) }

        // The load stopped: every node must hold the same log (digests and counts).
        var roots: [String] = []
        let converged = await cluster.eventually(.seconds(60), poll: .milliseconds(500)) {
            roots = []
            for i in 0..<nodes { roots.append(try await cluster.logSummary(i)["root_digest"] as? String ?? "") }
            return Set(roots).count == 1 && !roots[0].isEmpty
        }
        var compactedEvents: [UInt64] = []
        for i in 0..<nodes {
            let text = String(decoding: try await cluster.request(i, "GET", "/metrics"), as: UTF8.self)
            compactedEvents.append(Self.metric(text, "bifrost_eventlog_compacted_events_total") ?? 0)
        }
        await cluster.stopAll()

        let h = horizonDuration / .seconds(1)
        var perNode: [JSONValue] = []
        for i in 0..<nodes {
            let mine = samples.filter { $0.node == i }
            func at(_ t: Double) -> Sample? { mine.min { abs($0.seconds - t) < abs($1.seconds - t) } }
            let last = mine.last!
            var fields: [String: JSONValue] = [
                "node": .string(cluster.name(i)), "data_mdb_bytes_end": .uint(last.fileBytes),
                "live_bytes_end": .uint(last.liveBytes), "rss_bytes_end": .uint(last.rssBytes),
                "descriptors_end": .uint(UInt64(last.descriptors)), "events_end": .uint(last.events),
                "compacted_events": .uint(compactedEvents[i]),
            ]
            var horizons: [JSONValue] = []
            var k = 1.0
            while k * h <= elapsed {
                if let s = at(k * h) {
                    horizons.append(
                        .object([
                            "horizons": .double(k), "seconds": .double(s.seconds.rounded()),
                            "data_mdb_bytes": .uint(s.fileBytes), "live_bytes": .uint(s.liveBytes),
                            "rss_bytes": .uint(s.rssBytes),
                        ]))
                }
                k += 1
            }
            fields["at_each_horizon"] = .array(horizons)
            if elapsed >= 2 * h, let base = at(2 * h) {
                fields["data_mdb_growth_after_two_horizons"] = .double(Self.growth(base.fileBytes, last.fileBytes))
                fields["rss_growth_after_two_horizons"] = .double(Self.growth(base.rssBytes, last.rssBytes))
            }
            perNode.append(.object(fields))
        }
        let served = outcome.ok
        let meanLive =
            Double(samples.filter { $0.seconds == samples.last!.seconds }.map(\.liveBytes).reduce(0, +))
            / Double(nodes)
        let out: JSONValue = .object([
            "nodes": .uint(UInt64(nodes)), "rate": .uint(UInt64(rate)), "seconds": .double(elapsed.rounded()),
            "horizon_seconds": .double(h), "requests_served": .uint(UInt64(served)),
            "requests_failed": .uint(UInt64(outcome.failed)),
            "root_digests_identical": .bool(converged),
            // What one request leaves on each node once compaction keeps up: the live log at the
            // end over the requests of one horizon (the ones still kept event by event).
            "live_bytes_per_request_in_horizon": .double(
                (meanLive / max(1, Double(served) * min(1, h / max(1, elapsed)))).rounded()),
            "per_node": .array(perNode),
            "samples": .array(
                samples.map { s in
                    .object([
                        "t": .double((s.seconds * 10).rounded() / 10), "node": .uint(UInt64(s.node)),
                        "data_mdb_bytes": .uint(s.fileBytes), "live_bytes": .uint(s.liveBytes),
                        "rss_bytes": .uint(s.rssBytes), "descriptors": .uint(UInt64(s.descriptors)),
                        "events": .uint(s.events),
                    ])
                }),
        ])
        print(json ? out.rendered() : out.rendered(pretty: true))
        if !converged { throw ExitCode(1) }
    }

    func measure(_ cluster: LocalCluster, _ i: Int, at seconds: Double) async throws -> Sample {
        let dir = "\(cluster.root)/\(cluster.name(i))"
        let attributes = try? FileManager.default.attributesOfItem(atPath: dir + "/data.mdb")
        let file = (attributes?[.size] as? NSNumber)?.uint64Value ?? 0
        var live: UInt64 = 0
        var events: UInt64 = 0
        if let reader = try? EventLogReader.open(directory: dir) {
            live = UInt64((try? reader.liveBytes()) ?? 0)
            events = (try? reader.eventCount()) ?? 0
        }
        let pid = cluster.pid(i) ?? 0
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? 0
        return Sample(
            seconds: seconds, node: i, fileBytes: file, liveBytes: live, rssBytes: cluster.rss(i) ?? 0,
            descriptors: fds, events: events)
    }

    static func growth(_ from: UInt64, _ to: UInt64) -> Double {
        from == 0 ? 0 : ((Double(to) - Double(from)) / Double(from) * 10_000).rounded() / 10_000
    }

    static func duration(_ text: String) -> Duration? {
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86_400)]
        for (unit, scale) in units.reversed() where text.hasSuffix(unit) {
            if unit == "s" && text.hasSuffix("ms") { continue }
            if unit == "m" && text.hasSuffix("ms") { continue }
            guard let n = Double(text.dropLast(unit.count)) else { return nil }
            return .seconds(n * scale)
        }
        return nil
    }

    static func metric(_ text: String, _ name: String) -> UInt64? {
        for line in text.split(separator: "\n") where line.hasPrefix(name + " ") || line.hasPrefix(name + "{") {
            if let value = line.split(separator: " ").last, let d = Double(value) { return UInt64(d) }
        }
        return nil
    }
}

/// Chat completions at a fixed rate, round robin over `urls`, from workers that keep their
/// connections; counts what clients saw.
final class SteadyLoad: @unchecked Sendable {
    struct Outcome: Sendable {
        var ok = 0
        var failed = 0
    }

    let urls: [String]
    let token: String
    let rate: Int
    private let lock = NSLock()
    private var counts = Outcome()
    private var stopping = false
    private var task: Task<Void, Never>?
    private let session: URLSession
    static let body = #"{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "soak"}]}"#

    init(urls: [String], token: String, rate: Int) {
        self.urls = urls
        self.token = token
        self.rate = rate
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = 15
        configuration.httpMaximumConnectionsPerHost = 32
        session = URLSession(configuration: configuration)
    }

    var outcome: Outcome { lock.withLock { counts } }

    func start() {
        let workers = max(1, min(32, rate / 10))
        let interval = Duration.nanoseconds(1_000_000_000 * Int64(workers) / Int64(rate))
        task = Task {
            await withTaskGroup(of: Void.self) { group in
                for w in 0..<workers {
                    group.addTask {
                        var next = ContinuousClock.now
                        var n = w
                        while !self.lock.withLock({ self.stopping }) {
                            await self.one(self.urls[n % self.urls.count])
                            n += workers
                            next += interval
                            if next > ContinuousClock.now { try? await Task.sleep(until: next, clock: .continuous) }
                        }
                    }
                }
            }
        }
    }

    private func one(_ url: String) async {
        var request = URLRequest(url: URL(string: url)!)
        request.httpMethod = "POST"
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.httpBody = Data(Self.body.utf8)
        let ok = (try? await session.data(for: request)).map { ($0.1 as? HTTPURLResponse)?.statusCode == 200 } ?? false
        lock.withLock {
            if ok { counts.ok += 1 } else { counts.failed += 1 }
        }
    }

    /// Stops the load after the requests in progress (cancelling inside `URLSession.data(for:)`
    /// can deadlock swift-corelibs-foundation).
    func stop() async -> Outcome {
        lock.withLock { stopping = true }
        await task?.value
        return outcome
    }
}
