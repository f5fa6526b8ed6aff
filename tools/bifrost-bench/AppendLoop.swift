import ArgumentParser
import EventLog
import Foundation
import ToolSupport

/// The workload of the crash test: appends forever and reports every synced acknowledgement, so
/// a test can kill it with SIGKILL at any moment and check that nothing acknowledged is lost.
struct AppendLoop: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "append-loop",
        abstract: "Append events until killed, printing the id of every acknowledged synced event.",
        discussion: """
            Two tasks run at once: one appends batches of counter events (batched durability), one
            appends weight changes one at a time (synced durability) and prints `synced <hlc> <origin>`
            after each acknowledgement. Used by the crash test; stops after --seconds if given.
            """)

    @Option(help: "Data directory.")
    var data: String

    @Option(help: "Node name owning the directory.")
    var node: String = "crash-node"

    @Option(help: "Stop after this many seconds (default: run until killed).")
    var seconds: Double?

    func run() async throws {
        let store = try EventStore.open(directory: data, nodeName: node)
        let deadline = seconds.map { ContinuousClock.now + .milliseconds(Int64($0 * 1000)) }
        ToolSupport.printLine("ready")
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                var gen = SyntheticEvents(seed: UInt64(getpid()))
                while deadline.map({ ContinuousClock.now < $0 }) ?? true {
                    let now = SystemWallClock().nowMillis()
                    _ = try await store.append(contentsOf: (0..<200).map { _ in gen.counterPayload(nowMillis: now) })
                }
            }
            group.addTask {
                var i = 0
                while deadline.map({ ContinuousClock.now < $0 }) ?? true {
                    i += 1
                    let id = try await store.append(
                        .weightChanged(
                            WeightChanged(
                                keyID: "key-\(i % 7)", oldWeight: 1, newWeight: Double(i % 100) / 100,
                                reason: "crash-test",
                                actor: "operator:test")), durability: .synced)
                    ToolSupport.printLine("synced \(id.hlc.rawValue) \(id.origin.hex)")
                }
            }
            try await group.waitForAll()
        }
        try await store.close()
    }
}
