import ArgumentParser
import EventLog
import NIOCore
import NIOPosix
import ToolSupport

@main
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bifrost-bench",
        abstract: "Measure Bifrost's parts on this machine.",
        discussion: """
            Each benchmark prints a human summary, or one JSON object with --json (what `make bench`
            collects into docs/BENCHMARKS.md). Build with -c release before trusting the numbers.
            """,
        subcommands: [
            EventLogBench.self, ReplicationBench.self, GatewayBench.self, Populate.self, AppendLoop.self,
            PassthroughProxy.self, CompactionBench.self, SoakBench.self,
        ])

    /// The pass-through proxy runs its tasks on the event loops, as `bifrost` does.
    static func main() async {
        if CommandLine.arguments.dropFirst().first == PassthroughProxy.configuration.commandName {
            NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        }
        await main(nil)
    }
}
