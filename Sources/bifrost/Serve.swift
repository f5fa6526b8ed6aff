import ArgumentParser
import EventLog
import Foundation
import Gateway
import Logging

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a node.",
        discussion: """
            Settings come from --config, then the environment (CLUSTER_ENABLED, NODE_ID, PEERS, \
            BIND_ADDRESS, GOSSIP_PORT, DATA_DIR, BIFROST_CLUSTER_KEY, ADVERTISE_HOST), then these \
            flags. A bad setting stops the node at start with the path of the field \
            (cluster.gossip.interval: expected a duration like "500ms" ...); nothing is half-applied.

            The data directory holds the node's LMDB log; keep it on a persistent volume and give it \
            to the same node id across restarts. SIGTERM or SIGINT drains the node: /health turns \
            503 at once, requests in flight finish (or migrate), it leaves the cluster and flushes \
            its log.

            Example: bifrost serve --config deploy/bifrost.json --data /var/lib/bifrost
            """)

    @Option(name: .customLong("config"), help: "Configuration file (JSON).")
    var configFile: String?

    @Option(help: "Data directory (default: ./bifrost-data/<node id>).")
    var data: String?

    @Option(name: .customLong("node-id"), help: "This node's name.")
    var nodeID: String?

    @Option(help: "HTTP API address, host:port (default 0.0.0.0:8080).")
    var bind: String?

    @Option(name: .customLong("gossip-port"), help: "UDP gossip and TCP sync port (default 7946).")
    var gossipPort: Int?

    @Option(help: "Peers' API addresses, comma separated (host:port,host:port).")
    var peers: String?

    @Flag(help: "Join a cluster (same as cluster.enabled: true).")
    var cluster = false

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    @Flag(help: .hidden)
    var enableFaultInjection = false

    func run() async throws {
        var config: BifrostConfig
        var document: [UInt8]?
        do {
            (config, document) = try loadConfiguration()
        } catch let error as ConfigError {
            FileHandle.standardError.write(Data("bifrost: configuration error: \(error)\n".utf8))
            throw ExitCode(2)
        }
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw ValidationError(
                "--log-level '\(logLevel)' is not one of trace, debug, info, notice, warning, error, critical")
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: "bifrost")
        logger[metadataKey: "node.id"] = .string(config.cluster.nodeID)
        let node: Node
        do {
            node = try Node(
                config: config, fileDocument: document, logger: logger, faultInjection: enableFaultInjection)
        } catch let error as ConfigError {
            FileHandle.standardError.write(Data("bifrost: configuration error: \(error)\n".utf8))
            throw ExitCode(2)
        }
        try await node.run()
    }

    /// The configuration in force and the file it came from (nil without --config).
    func loadConfiguration() throws -> (BifrostConfig, [UInt8]?) {
        var config = BifrostConfig()
        var document: [UInt8]?
        if let path = configFile {
            guard let bytes = FileManager.default.contents(atPath: path) else {
                throw ConfigError(path: path, "cannot read the configuration file")
            }
            document = Array(bytes)
            config = try BifrostConfig.parse(Array(bytes))
        }
        try config.apply(environment: ProcessInfo.processInfo.environment)
        var flags: [String: String] = [:]
        if cluster { flags["CLUSTER_ENABLED"] = "true" }
        if let nodeID { flags["NODE_ID"] = nodeID }
        if let bind { flags["BIND_ADDRESS"] = bind }
        if let gossipPort { flags["GOSSIP_PORT"] = String(gossipPort) }
        if let peers { flags["PEERS"] = peers }
        if let data { flags["DATA_DIR"] = data }
        do {
            try config.apply(environment: flags)
        } catch {
            let flag =
                [
                    "CLUSTER_ENABLED": "--cluster", "NODE_ID": "--node-id", "BIND_ADDRESS": "--bind",
                    "GOSSIP_PORT": "--gossip-port", "PEERS": "--peers", "DATA_DIR": "--data",
                ][error.path] ?? error.path
            throw ConfigError(path: flag, error.message)
        }
        return (config, document)
    }
}
