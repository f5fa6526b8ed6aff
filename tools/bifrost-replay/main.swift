import ArgumentParser
import EventLog
import Foundation
import ToolSupport

struct Replay: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bifrost-replay",
        abstract: "Rebuild a node's views from its log and print them as JSON (the audit path).",
        discussion: """
            Folds every event of DATA_DIR (up to --until) into fresh views: limit counters, token
            counters, weights, config, key performance, alerts and members. The output is
            deterministic: the same log gives byte-identical output on any node. On a terminal, a
            progress line on standard error shows events folded of the log's total and the rate.

            --verify rebuilds the views from the whole log and compares them with what the node
            restores on start (its stored checkpoint plus the events after it), and recomputes every
            digest and compares it with the stored digest index. Exit status 1 lists the differences.

            Events fold as the node folds them: with the performance window and the retained span
            (windows older than retention.horizon are dropped) recorded in its checkpoint.

            Views: \(EventJSON.viewNames.joined(separator: ", ")), and spend.

            --view spend answers what each virtual key and each provider key spent, by model: the
            requests, token classes and cost (USD, exact in micro-USD; unpriced requests counted
            apart) of the usage whose one-minute window starts in [--since, --until). It reads the
            usage events alone, so every node with the same log prints the same. It is printed only
            when asked for.

            Examples:
              bifrost-replay ./data/node-1 --view limits --until 2026-11-25T04:00:00Z
              bifrost-replay ./data/node-1 --view spend --since 2026-11-01T00:00:00Z --until 2026-12-01T00:00:00Z
              bifrost-replay ./data/node-1 --verify
            """)

    @Argument(help: "The node's data directory.")
    var dataDir: String

    @Option(help: "Replay events at or before T only (RFC 3339 time or raw HLC); for spend, usage before T.")
    var until: String?

    @Option(help: "For spend: usage from T on (RFC 3339 time or raw HLC).")
    var since: String?

    @Option(name: .customLong("view"), help: "Print only this view (repeatable).")
    var views: [String] = []

    @Flag(help: "Compare the rebuilt views with the stored checkpoint and the digests with the events.")
    var verify = false

    @Option(
        name: .customLong("trusted-key"),
        help:
            "Base64 Ed25519 operator public key whose config updates count (repeatable; default: any valid signature).")
    var trustedKeys: [String] = []

    @Flag(help: "Indent the JSON.")
    var pretty = false

    func validate() throws {
        for view in views where !EventJSON.viewNames.contains(view) && view != Self.spendView {
            throw ValidationError(
                "--view '\(view)' is not a view; use one of \((EventJSON.viewNames + [Self.spendView]).joined(separator: ", "))"
            )
        }
        if since != nil && !views.contains(Self.spendView) {
            throw ValidationError("--since applies to --view spend only")
        }
        if verify && since != nil {
            throw ValidationError("--verify checks the whole log; drop --since")
        }
        if verify && until != nil {
            throw ValidationError("--verify checks the whole log; drop --until")
        }
        for key in trustedKeys where Data(base64Encoded: key)?.count != 32 {
            throw ValidationError("--trusted-key '\(key)' is not base64 of a 32-byte Ed25519 public key")
        }
    }

    func run() throws {
        let reader = try ToolSupport.openReader(dataDir, tool: "bifrost-replay")
        let names = (try? reader.nodeNames()) ?? [:]
        // Fold as the node does: its performance window and retained span, from its checkpoint.
        var settings = (try? reader.checkpoint())??.view.settings ?? ViewSettings()
        settings.trustedConfigKeys = nil
        if !trustedKeys.isEmpty {
            settings.trustedConfigKeys = Set(trustedKeys.map { Array(Data(base64Encoded: $0)!) })
        }
        let limit = try until.map { try ToolSupport.time($0, option: "--until") } ?? .max
        let progress = ProgressLine("replayed")
        let total = try reader.eventCount()
        let started = ContinuousClock.now
        let view = try reader.replay(until: limit, settings: settings) { progress.update($0, total: total) }
        progress.finish()
        let only = views.isEmpty ? nil : Set(views)
        if verify {
            return try runVerify(reader, replayed: view, settings: settings, names: names, only: only)
        }
        var rendered = EventJSON.views(view, only: only, names: names)
        if only?.contains(Self.spendView) == true, case .object(var fields) = rendered {
            let from = try since.map { try ToolSupport.time($0, option: "--since") } ?? .zero
            fields[Self.spendView] = EventJSON.spend(
                try spend(reader, sinceMillis: from.wallMillis, untilMillis: limit == .max ? .max : limit.wallMillis))
            rendered = .object(fields)
        }
        let output = JSONValue.object([
            "as_of": limit == .max ? .null : .uint(limit.rawValue),
            "as_of_time": limit == .max ? .null : .string(EventJSON.rfc3339(millis: limit.wallMillis)),
            "events_folded": .uint(view.eventCount),
            "views": rendered,
        ])
        ToolSupport.printLine(output.rendered(pretty: pretty))
        if isatty(STDERR_FILENO) == 1 {
            let seconds = (ContinuousClock.now - started).seconds
            FileHandle.standardError.write(
                Data(String(format: "replayed %llu events in %.2f s\n", view.eventCount, seconds).utf8))
        }
    }

    static let spendView = "spend"

    /// The usage events alone, folded into a spend report.
    func spend(_ reader: EventLogReader, sinceMillis: UInt64, untilMillis: UInt64) throws -> SpendReport {
        var report = SpendReport(sinceMillis: sinceMillis, untilMillis: untilMillis)
        let kinds: Set<UInt8> = [EventKind.usageRecorded.rawValue, EventKind.usageAggregated.rawValue]
        _ = try reader.scan(EventFilter(kinds: kinds)) { event in
            report.add(event)
            return true
        }
        return report
    }

    func runVerify(
        _ reader: EventLogReader, replayed: ViewState, settings: ViewSettings, names: [NodeID: String],
        only: Set<String>?
    ) throws {
        var differences: [JSONValue] = []
        let (restored, tail) = try reader.restoreViews(settings: settings)
        if ViewCodec.encode(restored) != ViewCodec.encode(replayed) {
            guard case .object(let a) = EventJSON.views(replayed, only: only, names: names),
                case .object(let b) = EventJSON.views(restored, only: only, names: names)
            else { fatalError("views render as objects") }
            for name in a.keys.sorted() where a[name] != b[name] {
                differences.append(
                    .object([
                        "what": .string("view"), "view": .string(name),
                        "replayed": Self.excerpt(a[name]!, versus: b[name]!),
                        "checkpoint": Self.excerpt(b[name]!, versus: a[name]!),
                    ]))
            }
            if differences.isEmpty {
                differences.append(.object(["what": .string("view"), "detail": .string("encoded views differ")]))
            }
        }
        let digestMismatches = try reader.verifyDigests()
        for m in digestMismatches.prefix(20) {
            differences.append(
                .object([
                    "what": .string("digest"), "node": .string(m.key.description),
                    "stored": .string(m.stored.description), "recomputed": .string(m.recomputed.description),
                ]))
        }
        let checkpoint = try reader.checkpoint(settings: settings)
        let report = JSONValue.object([
            "ok": .bool(differences.isEmpty),
            "events_folded": .uint(replayed.eventCount),
            "checkpoint_seq": checkpoint.map { .uint($0.seq) } ?? .null,
            "tail_events": .uint(tail),
            "digest_nodes_checked": .uint(UInt64(try reader.storedDigests().count)),
            "digest_mismatches": .uint(UInt64(digestMismatches.count)),
            "differences": .array(differences),
        ])
        ToolSupport.printLine(report.rendered(pretty: pretty))
        if !differences.isEmpty { throw ExitCode.failure }
    }

    /// The entries of `a` that `b` lacks (for arrays), or `a` itself.
    static func excerpt(_ a: JSONValue, versus b: JSONValue) -> JSONValue {
        if case .array(let x) = a, case .array(let y) = b {
            let other = Set(y)
            return .array(Array(x.filter { !other.contains($0) }.prefix(10)))
        }
        if case .object(let x) = a, case .object(let y) = b {
            return .object(x.filter { y[$0.key] != $0.value })
        }
        return a
    }
}

Replay.main()
