import ArgumentParser
import ClusterSimulation
import EventLog
import Foundation
import Replication

struct Sim: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bifrost-sim",
        abstract: "Run the seeded cluster simulator: membership and event replication under faults.",
        discussion: """
            Each seed runs a simulated cluster of 3–7 nodes (the seed chooses, unless --nodes)
            through a safety phase — appends while datagrams are dropped, delayed, duplicated and
            reordered, the network partitions, nodes crash and restart and clocks jump — then a
            liveness phase that heals everything, then the invariants: identical logs, digests and
            views everywhere, monotonic clocks, no acknowledged event lost, reconciliation equal to
            the true set difference, everyone alive in membership.

            Runs are deterministic: a seed replays exactly with the same build. Each failure prints
            the command that replays it. Exit status 1 if any seed failed.

            Examples:
              bifrost-sim                         one seed taken from the clock
              bifrost-sim --seed 1234             replay seed 1234
              bifrost-sim --seed 1 --seeds 500    seeds 1…500
              bifrost-sim --seed 1234 --trace 80  the last 80 trace lines of each failing seed
            """)

    @Option(help: "The first seed (default: taken from the clock and printed first).")
    var seed: UInt64?

    @Option(help: "How many consecutive seeds to run, from --seed.")
    var seeds = 1

    @Option(help: "Nodes per cluster, 2–26 (default: each seed chooses 3–7).")
    var nodes: Int?

    @Option(name: .customLong("safety-seconds"), help: "Virtual seconds of faults and appends.")
    var safetySeconds = 60.0

    @Option(name: .customLong("liveness-seconds"), help: "Most virtual seconds the healed cluster gets to converge.")
    var livenessSeconds = 120.0

    @Option(name: .customLong("events-per-second"), help: "Cluster-wide appends per virtual second.")
    var eventsPerSecond = 20.0

    @Option(
        name: .customLong("check-interval-seconds"),
        help: "Virtual seconds between reconciliations checked against the true set difference.")
    var checkIntervalSeconds = 1.0

    @Flag(name: .customLong("no-faults"), help: "No partitions, crashes, clock jumps or datagram loss.")
    var noFaults = false

    @Flag(name: .customLong("no-reconciliation"), help: "Discard reconciliation messages (expect failures).")
    var noReconciliation = false

    @Flag(name: .customLong("no-reconnect"), help: "Never reopen a dropped sync connection (expect failures).")
    var noReconnect = false

    @Option(help: "Print the last N trace lines of each failing seed.")
    var trace = 0

    @Flag(help: "One JSON report per line instead of text.")
    var json = false

    func validate() throws {
        guard seeds >= 1 else { throw ValidationError("--seeds must be at least 1") }
        if let nodes, !(2...26).contains(nodes) { throw ValidationError("--nodes must be 2…26, not \(nodes)") }
        guard safetySeconds >= 0, livenessSeconds > 0, checkIntervalSeconds > 0, eventsPerSecond >= 0 else {
            throw ValidationError("durations must be positive and --events-per-second not negative")
        }
    }

    func run() throws {
        let first = seed ?? SystemWallClock().nowMillis()
        if seed == nil {
            let line = "seed \(first) (from the clock)"
            if json { FileHandle.standardError.write(Data((line + "\n").utf8)) } else { emit(line) }
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var failed: [ClusterSimulator.Report] = []
        var passed = 0
        for k in 0..<UInt64(seeds) {
            let report = ClusterSimulator.run(options(seed: first &+ k))
            if json {
                emit(String(decoding: try encoder.encode(report), as: UTF8.self))
            } else {
                emit(report.summary)
                for failure in report.failures { emit("  \(failure)") }
                for line in report.trace where !report.passed { emit("    \(line)") }
            }
            if report.passed { passed += 1 } else { failed.append(report) }
        }
        if !json {
            emit("\(seeds) seed\(seeds == 1 ? "" : "s"): \(passed) passed, \(failed.count) failed")
            for report in failed { emit("  replay: \(report.replayCommand)") }
        }
        if !failed.isEmpty { throw ExitCode(1) }
    }

    private func options(seed: UInt64) -> ClusterSimulator.Options {
        var options = ClusterSimulator.Options(
            seed: seed, nodes: nodes, safetyDuration: .milliseconds(Int64((safetySeconds * 1000).rounded())),
            livenessBound: .milliseconds(Int64((livenessSeconds * 1000).rounded())), faults: !noFaults)
        options.reconciliation = !noReconciliation
        options.reconnect = !noReconnect
        options.eventsPerSecond = eventsPerSecond
        options.reconcilerCheckInterval = .milliseconds(Int64((checkIntervalSeconds * 1000).rounded()))
        options.traceLines = trace
        return options
    }
}

/// Writes a line at once (unbuffered), so a long sweep shows its progress through a pipe.
func emit(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

Sim.main()
