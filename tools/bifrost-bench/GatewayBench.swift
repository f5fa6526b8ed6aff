import ArgumentParser
import EventLog
import Foundation
import ToolSupport

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

struct GatewayBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract:
            "Gateway throughput, latency and CPU per request: upstream direct vs nginx vs a bare NIO proxy vs nodes.",
        discussion: """
            Starts a fixed-body upstream (nginx answering every POST /v1/chat/completions with the same \
            chat completion, usage included), then drives wrk (POST /v1/chat/completions, a virtual key \
            with a limit high enough never to bite) at 1 and --connections connections against: the \
            upstream direct; a plain nginx reverse proxy (one worker, keep-alive upstream connections); \
            `bifrost-bench passthrough`, a bare SwiftNIO proxy with no Swift concurrency (the floor of a \
            Swift proxy here); one `bifrost serve` node; and a node of a 3-node cluster. Each row reports \
            requests/s, latency p50/p99 and the latency added over the direct row, the CPU time the \
            proxy's processes spent per request (all node processes for the cluster), the gateway's \
            in-process overhead (its bifrost_gateway_overhead_seconds histogram) and the node's resident \
            memory. All of them run for the whole benchmark, and the measurements are interleaved: \
            each of --rounds rounds runs every row once, back to back, at each level. A figure is the \
            median over the rounds, and a comparison of two rows (a ratio, the latency added) the median \
            of their same-round comparisons, so the drift of a shared machine between rounds cancels \
            out. CPU per request is the least noisy figure on a shared machine. Needs wrk and nginx \
            (Debian packages wrk, nginx-light).
            """)

    @Option(help: "Seconds per measurement.")
    var seconds: Int = 6

    @Option(help: "Rounds; each runs every row once, back to back, and the report takes the medians.")
    var rounds: Int = 3

    @Option(help: "Connections of the loaded runs.")
    var connections: Int = 64

    @Flag(help: "Print one JSON object.")
    var json = false

    static let body = #"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"benchmark me"}],"max_tokens":16}"#

    func validate() throws {
        guard seconds >= 1 else { throw ValidationError("--seconds must be at least 1, got \(seconds)") }
        guard rounds >= 1 else { throw ValidationError("--rounds must be at least 1, got \(rounds)") }
        guard connections >= 2 else { throw ValidationError("--connections must be at least 2, got \(connections)") }
    }

    func run() async throws {
        let bin = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/wrk") else {
            throw ValidationError("wrk is not installed (apt-get install -y wrk)")
        }
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("bifrost-gwbench-\(getpid())").path
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let script = scratch + "/post.lua"
        try Data(
            """
            wrk.method = "POST"
            wrk.body = '\(Self.body)'
            wrk.headers["Content-Type"] = "application/json"
            wrk.headers["Authorization"] = "Bearer sk-bench-team"
            """.utf8
        ).write(to: URL(fileURLWithPath: script))

        guard NginxServer.installed else {
            throw ValidationError("nginx is not installed (apt-get install -y nginx-light): it is the fixed upstream")
        }
        let upstream = try FixedUpstream(scratch: scratch)
        defer { upstream.stop() }
        let upstreamURL = upstream.url
        guard await Self.waitHTTP(upstreamURL + "/health") else { throw ValidationError("the upstream did not start") }

        let config = """
            {"providers": {"openai": {"type": "openai", "base_url": "\(upstreamURL)/v1",
               "keys": [{"name": "bench-key-1", "value": "sk-bench-upstream-1", "models": ["gpt-4o-mini"], "weight": 0.8},
                        {"name": "bench-key-2", "value": "sk-bench-upstream-2", "models": ["gpt-4o-mini"], "weight": 0.2}]}},
             "virtual_keys": [{"name": "bench-team", "value": "sk-bench-team", "models": ["*"], "limits": {"rpm": 100000000}}],
             "cluster": {"gossip": {"interval": "1s", "timeout": "5s"}}}
            """

        // Every row's server runs for the whole benchmark, so the rounds can interleave them.
        let proxy = try NginxProxy(upstreamPort: upstream.port, scratch: scratch)
        defer { proxy.stop() }
        guard await Self.waitHTTP(proxy.url + "/health") else { throw ValidationError("nginx did not start") }
        let floorPort = Int.random(in: 15_000...16_999)
        let floor = try Self.launch(
            URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath(),
            ["passthrough", "--upstream", "127.0.0.1:\(upstream.port)", "--port", "\(floorPort)"])
        defer {
            kill(floor.processIdentifier, SIGKILL)
            floor.waitUntilExit()
        }
        guard await Self.waitHTTP("http://127.0.0.1:\(floorPort)/health") else {
            throw ValidationError("the pass-through proxy did not start")
        }
        let apiBase = Int.random(in: 21_000...29_900)
        let single = try LocalCluster(size: 1, bin: bin, tag: "-one", apiBase: apiBase)
        let triple = try LocalCluster(size: 3, bin: bin, tag: "-three", apiBase: apiBase + 50)
        defer {
            single.destroy()
            triple.destroy()
        }
        for cluster in [single, triple] {
            cluster.config = config
            try cluster.startAll()
            guard await cluster.waitAllAlive(timeout: .seconds(30)) else {
                throw ValidationError("the \(cluster.size)-node cluster did not form")
            }
        }
        let floorPID = floor.processIdentifier
        let rows: [Row] = [
            Row(label: "direct", base: upstreamURL, pids: { upstream.pids }),
            Row(label: "nginx", base: proxy.url, pids: { proxy.pids }),
            Row(label: "passthrough", base: "http://127.0.0.1:\(floorPort)", pids: { [floorPID] }),
            Row(
                label: "one_node", base: "http://127.0.0.1:\(single.apiBase)",
                pids: { (0..<single.size).compactMap { single.pid($0) } }, cluster: single),
            Row(
                label: "cluster_node", base: "http://127.0.0.1:\(triple.apiBase)",
                pids: { (0..<triple.size).compactMap { triple.pid($0) } }, cluster: triple),
        ]
        // Warm each path: upstream connections, the first limiter counters.
        for row in rows where row.label != "direct" {
            _ = try wrk(url: row.url, connections: connections, script: script, seconds: 2)
        }

        var measured: [String: [Measurement]] = [:]
        for conns in [1, connections] {
            for round in 1...rounds {
                for row in rows {
                    let m = try await measure(row, connections: conns, script: script)
                    measured["\(row.label)_c\(conns)", default: []].append(m)
                    var line =
                        "round \(round) \(row.label.padding(toLength: 12, withPad: " ", startingAt: 0)) c=\(conns): \(m.run.summary), \(Self.cpuText(m.cpu))"
                    if row.cluster != nil {
                        line +=
                            ", overhead p50 \(Self.micros(m.overhead?.0)) p99 \(Self.micros(m.overhead?.1)), RSS \((m.rss ?? 0) >> 20) MiB"
                    }
                    log(line)
                }
            }
        }
        for cluster in [single, triple] { await cluster.stopAll() }

        var runs: [String: JSONValue] = [:]
        for row in rows {
            for conns in [1, connections] {
                runs["\(row.label)_c\(conns)"] = .object(
                    Self.summary(of: row.label, connections: conns, measured: measured))
            }
        }
        let out: JSONValue = .object([
            "seconds_per_run": .uint(UInt64(seconds)), "connections": .uint(UInt64(connections)),
            "rounds": .uint(UInt64(rounds)), "runs": .object(runs),
        ])
        print(json ? out.rendered() : out.rendered(pretty: true))
    }

    /// One path under test: where wrk sends requests and whose processes' CPU is counted.
    struct Row {
        var label: String
        var base: String
        var pids: () -> [Int32]
        /// The nodes behind the path, whose overhead histogram and memory are read.
        var cluster: LocalCluster?

        var url: String { base + "/v1/chat/completions" }
    }

    /// One wrk run of one row.
    struct Measurement {
        var run: WrkRun
        var cpu: Double?
        var overhead: (Double, Double)?
        var rss: UInt64?
    }

    func measure(_ row: Row, connections conns: Int, script: String) async throws -> Measurement {
        var before: [(Double, Double)]?
        if let cluster = row.cluster {
            before = try await Self.histogram(cluster, name: "bifrost_gateway_overhead_seconds")
        }
        let processes = row.pids()
        let cpuBefore = CPUTime.seconds(processes)
        let r = try wrk(url: row.url, connections: conns, script: script)
        let cpu = CPUTime.perRequest(before: cpuBefore, after: CPUTime.seconds(processes), run: r)
        var m = Measurement(run: r, cpu: cpu)
        if let cluster = row.cluster, let before {
            let after = try await Self.histogram(cluster, name: "bifrost_gateway_overhead_seconds")
            m.overhead = Self.quantiles(before: before, after: after)
            m.rss = cluster.rss(0)
        }
        return m
    }

    /// A row's figures at one level: the median over the rounds of each figure, and of each
    /// comparison with another row the median of its same-round comparisons (rounds run every
    /// row back to back, so the machine's drift between rounds cancels out of them).
    static func summary(
        of label: String, connections conns: Int, measured: [String: [Measurement]]
    ) -> [String: JSONValue] {
        let mine = measured["\(label)_c\(conns)"] ?? []
        let direct = measured["direct_c\(conns)"] ?? []
        let nginx = measured["nginx_c\(conns)"] ?? []
        let floor = measured["passthrough_c\(conns)"] ?? []
        func rounded(_ v: Double, _ places: Double) -> JSONValue { .double((v * places).rounded() / places) }
        func paired(_ other: [Measurement], _ f: (Measurement, Measurement) -> Double?) -> Double? {
            median(zip(mine, other).compactMap(f))
        }
        var fields: [String: JSONValue] = [
            "requests_per_second": .double(median(mine.map(\.run.requestsPerSecond)) ?? 0),
            "p50_ms": .double(median(mine.map(\.run.p50Millis)) ?? 0),
            "p99_ms": .double(median(mine.map(\.run.p99Millis)) ?? 0),
            "errors": .uint(mine.reduce(0) { $0 + $1.run.errors }),
            "requests": .uint(mine.reduce(0) { $0 + $1.run.requests }),
            "rounds_requests_per_second": .array(mine.map { .double($0.run.requestsPerSecond) }),
        ]
        if label != "direct" {
            if let v = paired(direct, { $0.run.p50Millis - $1.run.p50Millis }) {
                fields["added_p50_ms"] = rounded(v, 1000)
            }
            if let v = paired(direct, { $0.run.p99Millis - $1.run.p99Millis }) {
                fields["added_p99_ms"] = rounded(v, 1000)
            }
            if let v = paired(direct, { $0.run.requestsPerSecond / max(1, $1.run.requestsPerSecond) }) {
                fields["throughput_ratio_to_direct"] = rounded(v, 1000)
            }
            fields["rounds_added_p50_ms"] = .array(
                zip(mine, direct).map { rounded($0.run.p50Millis - $1.run.p50Millis, 1000) })
        }
        if let cpu = median(mine.compactMap(\.cpu)) {
            fields["cpu_us_per_request"] = rounded(cpu * 1e6, 10)
            fields["rounds_cpu_us_per_request"] = .array(mine.compactMap(\.cpu).map { rounded($0 * 1e6, 10) })
        }
        if label == "one_node" || label == "cluster_node" {
            if let v = paired(nginx, { $0.run.requestsPerSecond / max(1, $1.run.requestsPerSecond) }) {
                fields["throughput_ratio_to_nginx"] = rounded(v, 1000)
            }
            if let v = paired(floor, { $0.run.requestsPerSecond / max(1, $1.run.requestsPerSecond) }) {
                fields["throughput_ratio_to_passthrough"] = rounded(v, 1000)
            }
            if let v = paired(floor, { a, b in a.cpu.flatMap { c in b.cpu.map { c / max(1e-9, $0) } } }) {
                fields["cpu_ratio_to_passthrough"] = rounded(v, 100)
            }
            if let p50 = median(mine.compactMap(\.overhead?.0)), let p99 = median(mine.compactMap(\.overhead?.1)) {
                fields["overhead_p50_us"] = .double(p50 * 1e6)
                fields["overhead_p99_us"] = .double(p99 * 1e6)
            }
            if let rss = mine.compactMap(\.rss).max() { fields["rss_mib"] = .double(Double(rss) / 1_048_576) }
        }
        return fields
    }

    static func median(_ values: [Double]) -> Double? {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted()
        let mid = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
    }

    /// Starts a helper process with its output discarded.
    static func launch(_ executable: URL, _ arguments: [String]) throws -> Process {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    static func cpuText(_ seconds: Double?) -> String {
        seconds.map { String(format: "CPU %.1f µs/request", $0 * 1e6) } ?? "CPU n/a"
    }

    func log(_ s: String) {
        FileHandle.standardError.write(Data((s + "\n").utf8))
    }

    struct WrkRun {
        var requestsPerSecond: Double = 0
        var p50Millis: Double = 0
        var p99Millis: Double = 0
        var requests: UInt64 = 0
        var errors: UInt64 = 0

        var summary: String {
            String(
                format: "%.0f req/s, p50 %.3f ms, p99 %.3f ms, %llu errors", requestsPerSecond, p50Millis, p99Millis,
                errors)
        }
    }

    func wrk(url: String, connections: Int, script: String, seconds: Int? = nil) throws -> WrkRun {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/wrk")
        p.arguments = [
            "-t", "\(min(2, connections))", "-c", "\(connections)", "-d", "\(seconds ?? self.seconds)s", "--latency",
            "-s", script, url,
        ]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = FileHandle.nullDevice
        try p.run()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return Self.parseWrk(text)
    }

    static func parseWrk(_ text: String) -> WrkRun {
        var run = WrkRun()
        for raw in text.split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            if line.hasPrefix("Requests/sec:"), parts.count >= 2 { run.requestsPerSecond = Double(parts[1]) ?? 0 }
            if line.hasPrefix("50%"), parts.count >= 2 { run.p50Millis = millis(String(parts[1])) }
            if line.hasPrefix("99%"), parts.count >= 2 { run.p99Millis = millis(String(parts[1])) }
            if line.contains("requests in"), let n = UInt64(parts.first ?? "") { run.requests = n }
            if line.hasPrefix("Non-2xx or 3xx responses:"), let n = UInt64(parts.last ?? "") { run.errors += n }
            if line.hasPrefix("Socket errors:") {
                for field in line.dropFirst("Socket errors:".count).split(separator: ",") {
                    run.errors += UInt64(field.split(separator: " ").last ?? "") ?? 0
                }
            }
        }
        return run
    }

    /// wrk's `1.23ms` / `456.00us` / `1.50s` in milliseconds.
    static func millis(_ text: String) -> Double {
        for (suffix, scale) in [("us", 0.001), ("ms", 1.0), ("s", 1000.0)] where text.hasSuffix(suffix) {
            return (Double(text.dropLast(suffix.count)) ?? 0) * scale
        }
        return Double(text) ?? 0
    }

    static func micros(_ seconds: Double?) -> String {
        seconds.map { String(format: "%.1f µs", $0 * 1e6) } ?? "n/a"
    }

    /// Cumulative bucket counts (upper bound in seconds → count) of a histogram on node 0.
    static func histogram(_ cluster: LocalCluster, name: String) async throws -> [(Double, Double)] {
        let text = String(decoding: try await cluster.request(0, "GET", "/metrics"), as: UTF8.self)
        var out: [(Double, Double)] = []
        for line in text.split(separator: "\n") where line.hasPrefix(name + "_bucket") {
            guard let le = line.range(of: "le=\""), let close = line[le.upperBound...].firstIndex(of: "\"") else {
                continue
            }
            let bound = String(line[le.upperBound..<close])
            let value = Double(line.split(separator: " ").last ?? "") ?? 0
            out.append((bound == "+Inf" ? .infinity : Double(bound) ?? 0, value))
        }
        return out.sorted { $0.0 < $1.0 }
    }

    /// p50 and p99 of the observations between two scrapes, interpolated within buckets.
    static func quantiles(before: [(Double, Double)], after: [(Double, Double)]) -> (Double, Double)? {
        let deltas = after.map { bucket in (bucket.0, bucket.1 - (before.first { $0.0 == bucket.0 }?.1 ?? 0)) }
        guard let total = deltas.last?.1, total > 0 else { return nil }
        func quantile(_ q: Double) -> Double {
            let target = q * total
            var lowerBound = 0.0
            var lowerCount = 0.0
            for (bound, count) in deltas {
                if count >= target {
                    if bound.isInfinite { return lowerBound }
                    let inBucket = count - lowerCount
                    return inBucket <= 0 ? bound : lowerBound + (bound - lowerBound) * (target - lowerCount) / inBucket
                }
                lowerBound = bound
                lowerCount = count
            }
            return lowerBound
        }
        return (quantile(0.5), quantile(0.99))
    }

    static func waitHTTP(_ url: String) async -> Bool {
        for _ in 0..<100 {
            if let (_, response) = try? await URLSession.shared.data(from: URL(string: url)!),
                (response as? HTTPURLResponse)?.statusCode == 200
            {
                return true
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return false
    }
}

/// An nginx server with a config of its own under `scratch`; `pids` are its master and workers.
class NginxServer {
    static let binary = "/usr/sbin/nginx"
    let process = Process()
    let port: Int
    let url: String
    let root: String

    /// Whether the nginx binary is there.
    static var installed: Bool { FileManager.default.isExecutableFile(atPath: binary) }

    init(name: String, scratch: String, port: Int, http: String) throws {
        self.port = port
        url = "http://127.0.0.1:\(port)"
        root = scratch + "/" + name
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let config = """
            worker_processes 1;
            daemon off;
            pid \(root)/nginx.pid;
            error_log \(root)/error.log warn;
            events { worker_connections 4096; }
            http {
              access_log off;
              client_body_temp_path \(root)/body;
              proxy_temp_path \(root)/proxy;
              fastcgi_temp_path \(root)/fastcgi;
              uwsgi_temp_path \(root)/uwsgi;
              scgi_temp_path \(root)/scgi;
              keepalive_requests 1000000;
            \(http)
            }
            """
        try Data(config.utf8).write(to: URL(fileURLWithPath: root + "/nginx.conf"))
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = ["-p", root, "-c", root + "/nginx.conf"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
    }

    /// The master and its workers.
    var pids: [Int32] { [process.processIdentifier] + CPUTime.children(of: process.processIdentifier) }

    func stop() {
        // SIGQUIT: nginx's graceful stop, which also stops its workers.
        kill(process.processIdentifier, SIGQUIT)
        process.waitUntilExit()
    }
}

/// The upstream of every row: nginx answering each chat completion with the same body, faster
/// than any proxy in front of it, so the rows measure the proxies and not the upstream.
final class FixedUpstream: NginxServer {
    static let reply =
        #"{"id":"chatcmpl-bench","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Benchmark reply."},"finish_reason":"stop","logprobs":null}],"usage":{"prompt_tokens":12,"completion_tokens":4,"total_tokens":16}}"#

    init(scratch: String) throws {
        let port = Int.random(in: 11_000...12_999)
        try super.init(
            name: "upstream", scratch: scratch, port: port,
            http: """
                  server {
                    listen 127.0.0.1:\(port) reuseport;
                    location = /health { default_type application/json; return 200 '{}'; }
                    location / { default_type application/json; return 200 '\(Self.reply)'; }
                  }
                """)
    }
}

/// A plain nginx reverse proxy in front of the upstream: one worker, keep-alive upstream
/// connections; the reference the other rows are compared with.
final class NginxProxy: NginxServer {
    init(upstreamPort: Int, scratch: String) throws {
        let port = Int.random(in: 13_000...14_999)
        try super.init(
            name: "proxy", scratch: scratch, port: port,
            http: """
                  upstream backend { server 127.0.0.1:\(upstreamPort); keepalive 256; }
                  server {
                    listen 127.0.0.1:\(port);
                    location / {
                      proxy_pass http://backend;
                      proxy_http_version 1.1;
                      proxy_set_header Connection "";
                    }
                  }
                """)
    }
}

/// CPU time of processes, from /proc.
enum CPUTime {
    static let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))

    /// User + system seconds of each process so far, summed.
    static func seconds(_ pids: [Int32]) -> Double {
        pids.reduce(0) { total, pid in
            guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                let close = text.lastIndex(of: ")")
            else { return total }
            // Fields after the command name: state is field 3; utime and stime are 14 and 15.
            let fields = text[text.index(after: close)...].split(separator: " ")
            guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else {
                return total
            }
            return total + (user + system) / ticksPerSecond
        }
    }

    static func perRequest(before: Double, after: Double, run: GatewayBench.WrkRun) -> Double? {
        run.requests > 0 ? (after - before) / Double(run.requests) : nil
    }

    static func children(of pid: Int32) -> [Int32] {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/task/\(pid)/children", encoding: .utf8) else {
            return []
        }
        return text.split(separator: " ").compactMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }
}

extension LocalCluster {
    /// Resident memory of node `i`, from /proc.
    func rss(_ i: Int) -> UInt64? {
        guard let pid = pid(i),
            let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kb = UInt64(line.split(separator: " ").dropFirst().first ?? "")
        else { return nil }
        return kb * 1024
    }
}
