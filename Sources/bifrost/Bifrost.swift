import ArgumentParser
import NIOCore
import NIOPosix
import Replication

@main
struct Bifrost: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bifrost",
        abstract: "A clustered, OpenAI- and Anthropic-compatible AI gateway.",
        discussion: """
            Every node is an equal peer: clients send OpenAI requests (/v1/chat/completions, \
            /v1/embeddings, /v1/models) or Anthropic requests (/v1/messages) to any node, which routes \
            them to provider keys by weight, enforces cluster-wide limits and fails over. Everything \
            the cluster agrees on is an event in each node's LMDB log.

            `bifrost serve` with no arguments starts a working single node on 0.0.0.0:8080 with its \
            data in ./bifrost-data/<node id>; with no providers configured it only serves the cluster \
            endpoints, so start from a config file (deploy/bifrost.json, docs/CONFIGURATION.md). To \
            form a cluster, give each node a name, its peers' API addresses and a shared cluster key:

              export BIFROST_CLUSTER_KEY=$(bifrost keygen)
              bifrost serve --cluster --node-id bifrost-node-1 --bind 127.0.0.1:8080 \\
                --gossip-port 7946 --peers 127.0.0.1:8081,127.0.0.1:8082

            Every node serves GET /health, /ui (the live dashboard), /cluster/nodes, \
            /cluster/metrics, /cluster/alerts, /cluster/events and /metrics (Prometheus).
            Tools: bifrost-dump (inspect the log), bifrost-replay (rebuild views, audits), \
            bifrost-config (operator keys, signed config). Docs: docs/CONFIGURATION.md, \
            docs/OPERATIONS.md, docs/ARCHITECTURE.md.
            """,
        subcommands: [Serve.self, Keygen.self],
        defaultSubcommand: Serve.self)

    /// Tasks run on the event loops the HTTP server and the upstream client use, so a request
    /// does not hop between two thread pools on its way through the node.
    static func main() async {
        NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        await main(nil)
    }
}

struct Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a new cluster key (base64 of 32 random bytes).",
        discussion: """
            Give the same key to every node as BIFROST_CLUSTER_KEY or in cluster.encryption.keys. \
            To rotate without downtime: add the new key second in cluster.encryption.keys on every \
            node, then move it first, then remove the old one (docs/OPERATIONS.md).
            """)

    func run() throws {
        print(Keyring.generateKeyBase64())
    }
}
