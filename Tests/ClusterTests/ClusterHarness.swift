import Foundation
import Synchronization
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Every process a harness started that may still run; all are killed when the test process
/// exits, so a test that fails or times out before its cleanup leaves nothing behind.
enum StartedProcesses {
    static let pids = Mutex(Set<pid_t>())
    private static let installed: Void = { atexit { StartedProcesses.killAll() } }()

    static func add(_ pid: pid_t) {
        _ = installed
        pids.withLock { _ = $0.insert(pid) }
    }

    static func remove(_ pid: pid_t) { pids.withLock { _ = $0.remove(pid) } }

    static func killAll() {
        for pid in pids.withLock({ $0 }) { kill(pid, SIGKILL) }
    }
}

/// Real `bifrost serve` processes on 127.0.0.1 with free ports. Every wait is bounded; only
/// the pids started here are ever signalled.
final class ClusterHarness: @unchecked Sendable {
    struct NodeSpec {
        var name: String
        var apiPort: Int
        var gossipPort: Int
        var dataDir: String
        var logPath: String
    }

    let root: String
    let binDir: URL
    private(set) var nodes: [NodeSpec] = []
    private var processes: [String: Process] = [:]
    private let lock = NSLock()

    init(nodes count: Int, label: String = "cluster") throws {
        root =
            FileManager.default.temporaryDirectory.appendingPathComponent("bifrost-\(label)-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        binDir = Self.findBinaries()
        // API ports p, p+1, …; gossip ports at a constant offset, as the node derives them.
        let (api, gossip) = try Self.freePortBlock(count: count)
        for i in 0..<count {
            let name = "node-\(i + 1)"
            nodes.append(
                NodeSpec(
                    name: name, apiPort: api + i, gossipPort: gossip + i, dataDir: "\(root)/\(name)",
                    logPath: "\(root)/\(name).log"))
        }
    }

    deinit {
        for p in processes.values where p.isRunning { kill(p.processIdentifier, SIGKILL) }
        if ProcessInfo.processInfo.environment["BIFROST_KEEP_TEST_DATA"] == nil {
            try? FileManager.default.removeItem(atPath: root)
        }
    }

    static func findBinaries() -> URL {
        if let dir = ProcessInfo.processInfo.environment["BIFROST_BIN_DIR"] { return URL(fileURLWithPath: dir) }
        var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.isExecutableFile(atPath: url.appendingPathComponent("bifrost").path) { return url }
        }
        return URL(fileURLWithPath: ".build/debug")
    }

    /// Two blocks of `count` consecutive ports (TCP and UDP free) at the same spacing.
    static func freePortBlock(count: Int) throws -> (api: Int, gossip: Int) {
        for _ in 0..<200 {
            let api = Int.random(in: 20_000...45_000)
            let gossip = api + 10_000
            if (0..<count).allSatisfy({
                portFree(api + $0, udp: false) && portFree(gossip + $0, udp: false) && portFree(gossip + $0, udp: true)
            }) {
                return (api, gossip)
            }
        }
        throw HarnessError("no free port block found")
    }

    static func portFree(_ port: Int, udp: Bool) -> Bool {
        let fd = socket(AF_INET, Int32(udp ? SOCK_DGRAM.rawValue : SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }

    func spec(_ name: String) -> NodeSpec { nodes.first { $0.name == name }! }

    /// Starts (or restarts) a node with the cluster's peers and the given key.
    func start(_ name: String, key: String, extraArguments: [String] = []) throws {
        let node = spec(name)
        let peers = nodes.filter { $0.name != name }.map { "127.0.0.1:\($0.apiPort)" }.joined(separator: ",")
        let process = Process()
        process.executableURL = binDir.appendingPathComponent("bifrost")
        process.arguments =
            [
                "serve", "--cluster", "--node-id", node.name, "--bind", "127.0.0.1:\(node.apiPort)", "--gossip-port",
                "\(node.gossipPort)", "--peers", peers, "--data", node.dataDir, "--enable-fault-injection",
                "--log-level", "debug",
            ] + extraArguments
        var env = ProcessInfo.processInfo.environment
        env["BIFROST_CLUSTER_KEY"] = key
        process.environment = env
        try launch(process, as: name, logPath: node.logPath)
    }

    /// The configuration file the nodes start with (`writeConfig`).
    var configPath: String { root + "/config.json" }

    func writeConfig(_ config: String) throws {
        try Data(config.utf8).write(to: URL(fileURLWithPath: configPath))
    }

    /// Starts (or restarts) a node with the configuration file.
    func startConfigured(_ name: String, key: String) throws {
        try start(name, key: key, extraArguments: ["--config", configPath])
    }

    /// Writes the configuration, then starts every node with it under one cluster key.
    func startAll(config: String, key: String) throws {
        try writeConfig(config)
        for node in nodes { try startConfigured(node.name, key: key) }
    }

    /// Runs `process` with its output appended to `logPath`, registered under `name` (for
    /// `terminate`) and for the kill at exit.
    private func launch(_ process: Process, as name: String, logPath: String) throws {
        if !FileManager.default.fileExists(atPath: logPath) {
            _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        }
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        log.seekToEndOfFile()
        process.standardOutput = log
        process.standardError = log
        try process.run()
        StartedProcesses.add(process.processIdentifier)
        lock.withLock { processes[name] = process }
    }

    /// A TCP port on 127.0.0.1 that nothing listens on now.
    static func freeTCPPort() throws -> Int {
        for _ in 0..<50 {
            let candidate = Int.random(in: 46_000...60_000)
            if portFree(candidate, udp: false) { return candidate }
        }
        throw HarnessError("no free TCP port found in 46000-60000")
    }

    /// Every node in `names` (default: all) sees every other one `alive`, within `timeout`.
    func allAlive(_ names: [String]? = nil, within timeout: Duration = .seconds(20)) async -> Bool {
        let names = names ?? nodes.map(\.name)
        return await eventually(timeout) {
            for n in names {
                let seen = await members(seenBy: n)
                if names.contains(where: { seen[$0] != "alive" }) { return false }
            }
            return true
        }
    }

    private func process(_ name: String) -> Process? { lock.withLock { processes[name] } }

    /// Starts `bifrost-mock-provider` on a free port; returns its base URL once it answers.
    func startMock(extraArguments: [String] = []) async throws -> String {
        let port = try Self.freeTCPPort()
        let process = Process()
        process.executableURL = binDir.appendingPathComponent("bifrost-mock-provider")
        process.arguments = ["--port", "\(port)"] + extraArguments
        try launch(process, as: "mock", logPath: root + "/mock.log")
        let url = "http://127.0.0.1:\(port)"
        let up = await eventually(.seconds(20)) {
            let (_, response) = try await URLSession.shared.data(from: URL(string: url + "/health")!)
            return (response as? HTTPURLResponse)?.statusCode == 200
        }
        guard up else { throw HarnessError("the mock provider did not start on \(url)") }
        return url
    }

    func stopMock() async { await terminate("mock") }

    /// haproxy in front of every node: round robin, /health checks every 200 ms, and retries of
    /// refused connections and 502/503/504 on another node (the balancer's own retry). Requests
    /// are buffered whole first: a retry of a request whose body was already streamed to a
    /// killed node otherwise reaches the next node without its body and waits for it.
    func startBalancer() throws -> String {
        let port = try Self.freeTCPPort()
        let servers = nodes.map { "  server \($0.name) 127.0.0.1:\($0.apiPort) check" }.joined(separator: "\n")
        let config = """
            global
              maxconn 4096
            defaults
              mode http
              timeout connect 1s
              timeout client 30s
              timeout server 30s
              retries 3
              option redispatch 1
              retry-on conn-failure empty-response response-timeout 502 503 504
              option http-buffer-request
            frontend bifrost
              bind 127.0.0.1:\(port)
              default_backend nodes
            backend nodes
              balance roundrobin
              option httpchk GET /health
              http-check expect status 200
              default-server inter 200ms fall 1 rise 2
            \(servers)

            """
        let path = root + "/haproxy.cfg"
        try Data(config.utf8).write(to: URL(fileURLWithPath: path))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/haproxy")
        process.arguments = ["-db", "-f", path]
        try launch(process, as: "balancer", logPath: root + "/haproxy.log")
        return "http://127.0.0.1:\(port)"
    }

    /// Sends a signal without waiting for the process to exit.
    func signal(_ name: String, _ signal: Int32) {
        guard let p = process(name), p.isRunning else { return }
        kill(p.processIdentifier, signal)
    }

    func kill9(_ name: String) {
        let p = process(name)
        guard let p, p.isRunning else { return }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        StartedProcesses.remove(p.processIdentifier)
    }

    /// A POST with a bearer token; returns the status and the node that answered.
    func post(
        _ name: String, _ path: String, token: String, body: String, headers: [String: String] = [:]
    )
        async throws -> (Int, String?)
    {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(spec(name).apiPort)\(path)")!)
        request.httpMethod = "POST"
        request.timeoutInterval = 10
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        request.httpBody = Data(body.utf8)
        let (_, response) = try await URLSession.shared.data(for: request)
        let http = response as? HTTPURLResponse
        return (http?.statusCode ?? 0, http?.value(forHTTPHeaderField: "x-bifrost-node"))
    }

    /// `bifrost-replay <data-dir> --view <view>` as JSON.
    func replay(_ name: String, view: String) throws -> [String: Any] {
        let data = try toolOutput("bifrost-replay", [spec(name).dataDir, "--view", view])
        return (try JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? [:]
    }

    /// What one of the tools prints on standard output.
    private func toolOutput(_ tool: String, _ arguments: [String]) throws -> Data {
        let p = Process()
        p.executableURL = binDir.appendingPathComponent(tool)
        p.arguments = arguments
        let out = Pipe()
        let err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let message = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw HarnessError(
                "\(tool) \(arguments.joined(separator: " ")) exited \(p.terminationStatus): "
                    + String(decoding: message, as: UTF8.self))
        }
        return data
    }

    func terminate(_ name: String, timeout: Duration = .seconds(15)) async {
        let p = process(name)
        guard let p, p.isRunning else { return }
        kill(p.processIdentifier, SIGTERM)
        let deadline = ContinuousClock.now + timeout
        while p.isRunning && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(50)) }
        if p.isRunning {
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
        }
        StartedProcesses.remove(p.processIdentifier)
    }

    func stopAll() async {
        await terminate("balancer")
        for node in nodes { await terminate(node.name) }
        await terminate("mock")
    }

    func log(_ name: String) -> String { (try? String(contentsOfFile: spec(name).logPath, encoding: .utf8)) ?? "" }

    // MARK: HTTP

    func request(_ name: String, _ method: String, _ path: String, body: String? = nil) async throws -> (Int, Data) {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(spec(name).apiPort)\(path)")!)
        request.httpMethod = method
        request.timeoutInterval = 5
        if let body { request.httpBody = Data(body.utf8) }
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, data)
    }

    func json(_ name: String, _ path: String) async throws -> [String: Any] {
        let (_, data) = try await request(name, "GET", path)
        return (try JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? [:]
    }

    /// Member name → status as `name` sees it.
    func members(seenBy name: String) async -> [String: String] {
        guard let body = try? await json(name, "/cluster/nodes"), let nodes = body["nodes"] as? [[String: Any]] else {
            return [:]
        }
        var out: [String: String] = [:]
        for n in nodes { if let id = n["node_id"] as? String, let s = n["status"] as? String { out[id] = s } }
        return out
    }

    /// `bifrost-dump --stats` of a node's data dir (works while it runs).
    func dumpStats(_ name: String) throws -> [String: Any] {
        let data = try toolOutput("bifrost-dump", [spec(name).dataDir, "--stats"])
        return (try JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? [:]
    }

    /// `bifrost-dump <data-dir> --kind <kind> --format jsonl`, one object per event.
    func dumpEvents(_ name: String, kind: String) throws -> [[String: Any]] {
        let data = try toolOutput("bifrost-dump", [spec(name).dataDir, "--kind", kind, "--format", "jsonl"])
        return String(decoding: data, as: UTF8.self).split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }

    /// A request with a JSON body and a bearer token to any URL (the mock's controls, the admin API).
    func send(_ method: String, _ url: String, token: String? = nil, body: String? = nil) async throws -> (Int, Data) {
        var request = URLRequest(url: URL(string: url)!)
        request.httpMethod = method
        request.timeoutInterval = 10
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        if let body {
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            request.httpBody = Data(body.utf8)
        }
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, data)
    }

    func url(_ name: String, _ path: String) -> String { "http://127.0.0.1:\(spec(name).apiPort)\(path)" }

    /// Polls `condition` every 100 ms until it holds or `timeout` passes; returns whether it held.
    func eventually(_ timeout: Duration, _ condition: () async throws -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if (try? await condition()) == true { return true }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return (try? await condition()) == true
    }
}

struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}
