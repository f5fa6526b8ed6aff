import ArgumentParser
import Replication

@main
struct Bifrost: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bifrost",
        abstract: "A clustered, OpenAI- and Anthropic-compatible AI gateway.",
        discussion: """
            Every node is an equal peer. `bifrost serve` with no arguments starts a working single node
            with its data in ./bifrost-data/<node id>. To form a cluster, give each node a name, its
            peers' API addresses and a shared cluster key:

              export BIFROST_CLUSTER_KEY=$(bifrost keygen)
              bifrost serve --node-id bifrost-node-1 --bind 127.0.0.1:8080 --gossip-port 7946 \\
                --peers 127.0.0.1:8081,127.0.0.1:8082 --cluster

            Configuration reference: docs/CONFIGURATION.md. Operations: docs/OPERATIONS.md.
            """,
        subcommands: [Serve.self, Keygen.self],
        defaultSubcommand: Serve.self)
}

struct Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a new cluster key (base64 of 32 random bytes).",
        discussion: """
            Give the same key to every node as BIFROST_CLUSTER_KEY or in cluster.encryption.keys.
            To rotate: add the new key second on every node, then move it first, then remove the old one.
            """)

    func run() throws {
        print(Keyring.generateKeyBase64())
    }
}
