import ArgumentParser
import EventLog
import Foundation
import ToolSupport

struct Dump: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bifrost-dump",
        abstract: "Print the events of a Bifrost node's log, or statistics about it.",
        discussion: """
            Reads DATA_DIR (the node's --data directory) with LMDB readers, so it is safe while the node
            runs. Events come out in HLC order, one JSON object per line (hlc, time, logical, origin,
            origin_id, kind, data) or as a table. Secrets in configuration documents are redacted.

            Examples:
              bifrost-dump ./data/node-1 --kind config.updated --format table
              bifrost-dump ./data/node-1 --origin bifrost-node-2 --since 2026-11-25T03:00:00Z --limit 20
              bifrost-dump ./data/node-1 --stats
              bifrost-dump ./data/node-1 --follow --kind weight.changed --kind alert.fired --format table

            --follow prints the matching events already stored, then every matching event as the node
            stores it (its own, and peers' as they arrive, in arrival order), until interrupted.

            Kinds: \(EventKind.allCases.map(\.name).joined(separator: ", ")).
            """)

    @Argument(help: "The node's data directory.")
    var dataDir: String

    @Option(name: .customLong("kind"), help: "Only events of this kind (repeatable).")
    var kinds: [String] = []

    @Option(help: "Only events created by this node (its name or 16-hex-digit id).")
    var origin: String?

    @Option(help: "Only events at or after T (RFC 3339 time or raw HLC).")
    var since: String?

    @Option(help: "Only events at or before T (RFC 3339 time or raw HLC).")
    var until: String?

    @Option(help: "Print at most N events.")
    var limit: Int?

    @Option(help: "Output format: jsonl or table.")
    var format: Format = .jsonl

    @Flag(help: "Print one JSON object with events, by_kind, by_origin, first_hlc, last_hlc, root_digest.")
    var stats = false

    @Flag(help: "After the stored events, keep printing new ones as the node stores them (Ctrl-C stops).")
    var follow = false

    @Option(help: "With --follow: how often to look for new events, in milliseconds.")
    var pollMs: Int = 200

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case jsonl, table
    }

    func validate() throws {
        for kind in kinds where EventKind(name: kind) == nil {
            throw ValidationError(
                "--kind '\(kind)' is not an event kind; use one of \(EventKind.allCases.map(\.name).joined(separator: ", "))"
            )
        }
        if let limit, limit < 0 { throw ValidationError("--limit must be 0 or more, got \(limit)") }
        if follow && stats { throw ValidationError("--follow prints events; it cannot be combined with --stats") }
        if follow && limit != nil { throw ValidationError("--follow runs until interrupted; drop --limit") }
        if !(10...60_000).contains(pollMs) { throw ValidationError("--poll-ms must be 10...60000, got \(pollMs)") }
    }

    func run() throws {
        let reader = try ToolSupport.openReader(dataDir, tool: "bifrost-dump")
        let names = (try? reader.nodeNames()) ?? [:]
        if stats { return try printStats(reader, names: names) }
        var filter = EventFilter(limit: limit)
        if let since { filter.since = try ToolSupport.time(since, option: "--since") }
        if let until { filter.until = try ToolSupport.time(until, option: "--until") }
        if !kinds.isEmpty { filter.kinds = Set(kinds.compactMap { EventKind(name: $0)?.rawValue }) }
        if let origin { filter.origins = [try reader.resolveOrigin(origin)] }
        if format == .table {
            ToolSupport.printLine(Table.header)
        }
        var out = ""
        // The scan's snapshot ends at this insertion seq; following goes on from exactly there.
        let followFrom = try reader.scan(filter) { event in
            print(event, names: names, into: &out)
            return true
        }
        FileHandle.standardOutput.write(Data(out.utf8))
        if follow { try followLog(reader, filter: filter, from: followFrom) }
    }

    func print(_ event: Event, names: [NodeID: String], into out: inout String) {
        switch format {
        case .jsonl: out += EventJSON.event(event, names: names).rendered() + "\n"
        case .table: out += Table.row(event, names: names) + "\n"
        }
        if out.utf8.count > 1 << 16 {
            FileHandle.standardOutput.write(Data(out.utf8))
            out = ""
        }
    }

    /// Polls the insertion log for events stored after `seq` and prints those the filter keeps.
    func followLog(_ reader: EventLogReader, filter: EventFilter, from seq: UInt64) throws {
        // Started from a process that blocks signals (a test runner, a supervisor), this one
        // inherits the mask; following ends on SIGINT or SIGTERM, so make sure they arrive.
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGINT)
        sigaddset(&signals, SIGTERM)
        sigprocmask(SIG_UNBLOCK, &signals, nil)
        var seq = seq
        var names = (try? reader.nodeNames()) ?? [:]
        while true {
            var out = ""
            try reader.scanInserted(after: seq) { s, event in
                seq = s
                guard filter.matches(event.id, kind: event.payload.kindByte) else { return true }
                if names[event.id.origin] == nil { names = (try? reader.nodeNames()) ?? names }
                print(event, names: names, into: &out)
                return true
            }
            FileHandle.standardOutput.write(Data(out.utf8))
            usleep(useconds_t(pollMs * 1000))
        }
    }

    func printStats(_ reader: EventLogReader, names: [NodeID: String]) throws {
        let s = try reader.stats()
        var byOrigin: [String: JSONValue] = [:]
        for (origin, n) in s.byOrigin { byOrigin[names[origin] ?? origin.hex] = .uint(n) }
        let json = JSONValue.object([
            "node": s.nodeName.map(JSONValue.string) ?? .null,
            "events": .uint(s.events),
            "by_kind": .object(s.byKind.mapValues(JSONValue.uint)),
            "by_origin": .object(byOrigin),
            "first_hlc": s.firstHLC.map { .uint($0.rawValue) } ?? .null,
            "last_hlc": s.lastHLC.map { .uint($0.rawValue) } ?? .null,
            "first_time": s.firstHLC.map { .string(EventJSON.rfc3339(millis: $0.wallMillis)) } ?? .null,
            "last_time": s.lastHLC.map { .string(EventJSON.rfc3339(millis: $0.wallMillis)) } ?? .null,
            "root_digest": .string(s.root.sumHex),
            "root_count": .uint(s.root.count),
            "used_bytes": .uint(UInt64(s.usedBytes)),
            "checkpoint_seq": s.checkpointSeq.map(JSONValue.uint) ?? .null,
            "compacted_before": s.compactedBefore.map { .uint($0.rawValue) } ?? .null,
        ])
        ToolSupport.printLine(json.rendered())
    }
}

enum Table {
    static let header =
        pad("TIME", 24) + "  " + pad("HLC", 20) + "  " + pad("ORIGIN", 16) + "  " + pad("KIND", 19)
        + "  DATA"

    static func pad(_ s: String, _ n: Int) -> String {
        s.count >= n ? s : s + String(repeating: " ", count: n - s.count)
    }

    static func row(_ event: Event, names: [NodeID: String]) -> String {
        let origin = names[event.id.origin] ?? event.id.origin.hex
        return pad(EventJSON.rfc3339(millis: event.id.hlc.wallMillis), 24) + "  "
            + pad(String(event.id.hlc.rawValue), 20)
            + "  " + pad(origin, 16) + "  " + pad(event.payload.kindName, 19) + "  "
            + EventJSON.payload(event.payload).rendered()
    }
}

Dump.main()
