import Foundation
import Testing

@testable import EventLog

/// The operator tools, run as the separate processes operators run.
@Suite(.serialized) struct ToolTests {
    static let t0: UInt64 = 1_764_000_000_000

    /// A closed data dir with random events, a signed config holding a literal secret, and names.
    func makeDataDir(_ dir: TempDir) async throws -> (path: String, events: [Event]) {
        let path = dir.sub("node")
        let store = try EventStore.open(directory: path, nodeName: "bifrost-node-1", settings: testSettings())
        var events = randomEvents(
            count: 1_500, seed: 17, origins: ["bifrost-node-2", "bifrost-node-3"], startMillis: Self.t0)
        let config = ConfigUpdated(
            document: Array(
                #"{"providers":{"openai":{"keys":[{"name":"k1","value":"sk-live-SECRET-123","weight":1}]}},"admin":{"token":"env.BIFROST_ADMIN_TOKEN"}}"#
                    .utf8),
            author: "ops")
        events.append(
            Event(
                id: EventID(
                    hlc: HLCTimestamp(wallMillis: Self.t0 + 1, logical: 0), origin: NodeID(name: "bifrost-node-2")),
                payload: .configUpdated(config)))
        events.append(
            Event(
                id: EventID(
                    hlc: HLCTimestamp(wallMillis: Self.t0 + 2, logical: 0), origin: NodeID(name: "bifrost-node-3")),
                payload: .membershipChanged(
                    MembershipChanged(node: "bifrost-node-3", state: .alive, incarnation: 1, observer: "bifrost-node-2")
                )))
        _ = try await store.insert(events)
        try await store.close()
        return (path, events.sorted { $0.id < $1.id })
    }

    @Test func dump_printsEveryEventAsJSONLines_inHLCOrder_withNames() async throws {
        let dir = TempDir()
        let (path, events) = try await makeDataDir(dir)
        let r = try runTool("bifrost-dump", [path])
        #expect(r.status == 0, "\(r.stderr)")
        let lines = r.stdout.split(separator: "\n")
        #expect(lines.count == events.count)
        let first = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as! [String: Any]
        #expect((first["hlc"] as? NSNumber)?.uint64Value == events[0].id.hlc.rawValue)
        #expect(first["time"] as? String == EventJSON.rfc3339(millis: events[0].id.hlc.wallMillis))
        #expect((first["logical"] as? NSNumber)?.intValue == Int(events[0].id.hlc.logical))
        #expect(["bifrost-node-2", "bifrost-node-3"].contains(first["origin"] as? String ?? ""))
        #expect(first["kind"] as? String == events[0].payload.kindName)
        #expect(first["data"] is [String: Any])
    }

    @Test func dumpFollow_printsStoredThenNewEvents_inArrivalOrder_onceEach() async throws {
        let dir = TempDir()
        let path = dir.sub("node")
        let store = try EventStore.open(directory: path, nodeName: "bifrost-node-1", settings: testSettings())
        let early = randomEvents(count: 40, seed: 3, origins: ["bifrost-node-2"], startMillis: Self.t0)
        _ = try await store.insert(early)
        let output = dir.sub("follow.jsonl")
        _ = FileManager.default.createFile(atPath: output, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try Binaries.path("bifrost-dump"))
        process.arguments = [path, "--follow", "--poll-ms", "20"]
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
        process.standardError = FileHandle.nullDevice
        try process.run()
        defer {
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
            }
        }
        func lines() -> [[String: Any]] {
            let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
            return text.split(separator: "\n").compactMap {
                try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
            }
        }
        func waitFor(_ count: Int) async -> Bool {
            for _ in 0..<200 where lines().count < count { try? await Task.sleep(for: .milliseconds(25)) }
            return lines().count >= count
        }
        #expect(await waitFor(early.count))
        // A peer's old event arriving late comes out when it arrives, after the newer ones.
        let late = randomEvents(count: 10, seed: 4, origins: ["bifrost-node-3"], startMillis: Self.t0 - 60_000)
        let fresh = try await store.append(contentsOf: [
            .weightChanged(WeightChanged(keyID: "k", oldWeight: 1, newWeight: 0.5, reason: "test", actor: "ops"))
        ])
        _ = try await store.insert(late)
        #expect(await waitFor(early.count + 1 + late.count))
        try await Task.sleep(for: .milliseconds(100))
        let printed = lines()
        #expect(printed.count == early.count + 1 + late.count, "an event was printed twice or missed")
        #expect((printed[early.count]["hlc"] as? NSNumber)?.uint64Value == fresh[0].hlc.rawValue)
        let lateOut = Set(printed.suffix(late.count).compactMap { ($0["hlc"] as? NSNumber)?.uint64Value })
        #expect(lateOut == Set(late.map(\.id.hlc.rawValue)))
        process.terminate()
        for _ in 0..<100 where process.isRunning { try await Task.sleep(for: .milliseconds(20)) }
        #expect(!process.isRunning, "--follow did not stop on SIGTERM")
        try await store.close()
    }

    @Test func dump_filtersByKindOriginTimeAndLimit() async throws {
        let dir = TempDir()
        let (path, events) = try await makeDataDir(dir)
        let kinds = try runTool("bifrost-dump", [path, "--kind", "weight.changed", "--kind", "alert.fired"])
        let expectedKinds = events.filter { [.weightChanged, .alertFired].contains($0.payload.kind) }
        #expect(kinds.stdout.split(separator: "\n").count == expectedKinds.count)
        let origin = try runTool("bifrost-dump", [path, "--origin", "bifrost-node-3", "--limit", "5"])
        let lines = origin.stdout.split(separator: "\n")
        #expect(lines.count == 5)
        #expect(lines.allSatisfy { $0.contains(#""origin":"bifrost-node-3""#) })
        let since = events[100].id.hlc
        let until = events[200].id.hlc
        let ranged = try runTool(
            "bifrost-dump", [path, "--since", "\(since.rawValue)", "--until", "\(until.rawValue)"])
        #expect(
            ranged.stdout.split(separator: "\n").count
                == events.filter { $0.id.hlc >= since && $0.id.hlc <= until }.count)
        let rfc = try runTool("bifrost-dump", [path, "--since", EventJSON.rfc3339(millis: Self.t0 + 150_000)])
        #expect(
            rfc.stdout.split(separator: "\n").count == events.filter { $0.id.hlc.wallMillis >= Self.t0 + 150_000 }.count
        )
        let table = try runTool("bifrost-dump", [path, "--format", "table", "--limit", "3"])
        #expect(table.stdout.split(separator: "\n").count == 4)
        #expect(table.stdout.hasPrefix("TIME"))
    }

    @Test func dump_redactsSecrets_butKeepsEnvReferences() async throws {
        let dir = TempDir()
        let (path, _) = try await makeDataDir(dir)
        let r = try runTool("bifrost-dump", [path, "--kind", "config.updated"])
        #expect(r.status == 0)
        #expect(!r.stdout.contains("sk-live-SECRET-123"))
        #expect(r.stdout.contains("[redacted]"))
        #expect(r.stdout.contains("env.BIFROST_ADMIN_TOKEN"))
        let all = try runTool("bifrost-dump", [path, "--format", "table"])
        #expect(!all.stdout.contains("sk-live-SECRET-123"))
    }

    @Test func dumpStats_reportsCountsAndTheRootDigest() async throws {
        let dir = TempDir()
        let (path, events) = try await makeDataDir(dir)
        let r = try runTool("bifrost-dump", [path, "--stats"])
        let stats = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        #expect((stats["events"] as? NSNumber)?.intValue == events.count)
        #expect((stats["first_hlc"] as? NSNumber)?.uint64Value == events.first!.id.hlc.rawValue)
        #expect((stats["last_hlc"] as? NSNumber)?.uint64Value == events.last!.id.hlc.rawValue)
        let byKind = stats["by_kind"] as! [String: NSNumber]
        #expect(byKind["config.updated"]?.intValue == events.filter { $0.payload.kind == .configUpdated }.count)
        let byOrigin = stats["by_origin"] as! [String: NSNumber]
        #expect(byOrigin.values.map(\.intValue).reduce(0, +) == events.count)
        let reader = try EventLogReader.open(directory: path)
        #expect(stats["root_digest"] as? String == (try reader.digest(.root)).sumHex)
    }

    @Test func dump_onAMissingOrForeignDirectory_failsWithOneLine() throws {
        let dir = TempDir()
        let missing = try runTool("bifrost-dump", [dir.sub("absent")])
        #expect(missing.status != 0)
        #expect(missing.stderr.split(separator: "\n").count == 1)
        #expect(missing.stderr.contains("no such data directory"))
        try FileManager.default.createDirectory(atPath: dir.sub("other"), withIntermediateDirectories: true)
        try Data("not lmdb".utf8).write(to: URL(fileURLWithPath: dir.sub("other/data.mdb")))
        let foreign = try runTool("bifrost-dump", [dir.sub("other"), "--stats"])
        #expect(foreign.status != 0)
        #expect(foreign.stderr.split(separator: "\n").count == 1)
        #expect(foreign.stderr.contains("not a Bifrost data directory"))
        let badKind = try runTool("bifrost-dump", [dir.path, "--kind", "nope"])
        #expect(badKind.status != 0)
        #expect(badKind.stderr.contains("--kind 'nope' is not an event kind"))
    }

    @Test func dump_readsWhileANodeWrites() async throws {
        let dir = TempDir()
        let store = try EventStore.open(directory: dir.path, nodeName: "live", settings: testSettings())
        _ = try await store.insert(randomEvents(count: 200, seed: 1, origins: ["p"], startMillis: Self.t0))
        let r = try runTool("bifrost-dump", [dir.path, "--stats"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains(#""events":200"#))
        _ = try await store.insert(randomEvents(count: 100, seed: 2, origins: ["q"], startMillis: Self.t0))
        #expect(try runTool("bifrost-dump", [dir.path, "--stats"]).stdout.contains(#""events":300"#))
        try await store.close()
    }

    @Test func replay_isDeterministic_andMatchesTheLiveViews() async throws {
        let dir = TempDir()
        let (path, events) = try await makeDataDir(dir)
        let a = try runTool("bifrost-replay", [path])
        let b = try runTool("bifrost-replay", [path])
        #expect(a.status == 0, "\(a.stderr)")
        #expect(a.stdout == b.stdout)
        var expected = ViewState()
        for e in events { expected.apply(e) }
        let names = try EventLogReader.open(directory: path).nodeNames()
        let rendered = JSONValue.object([
            "as_of": .null, "as_of_time": .null, "events_folded": .uint(UInt64(events.count)),
            "views": EventJSON.views(expected, names: names),
        ]).rendered()
        #expect(a.stdout == rendered + "\n")
        #expect(!a.stdout.contains("sk-live-SECRET-123"))
        let limits = try runTool(
            "bifrost-replay", [path, "--view", "limits", "--until", "\(events[100].id.hlc.rawValue)"])
        let obj = try JSONSerialization.jsonObject(with: Data(limits.stdout.utf8)) as! [String: Any]
        #expect((obj["views"] as! [String: Any]).keys.sorted() == ["limits"])
        #expect((obj["events_folded"] as? NSNumber)?.intValue == 101)
    }

    @Test func replayVerify_passesOnAGoodLog_andFailsWhenTheDigestIndexIsWrong() async throws {
        let dir = TempDir()
        let (path, _) = try await makeDataDir(dir)
        let ok = try runTool("bifrost-replay", [path, "--verify"])
        #expect(ok.status == 0, "\(ok.stdout)\(ok.stderr)")
        #expect(ok.stdout.contains(#""ok":true"#))
        // Corrupt one digest node behind the store's back.
        do {
            let env = try LMDBEnvironment(path: path)
            let dbs = try Databases(env: env, create: false)
            try env.write { txn in
                try txn.put(
                    dbs.digests, key: DigestKey.root.bytes, value: Fingerprint(limbs: (1, 2, 3, 4), count: 9).bytes)
            }
        }
        let bad = try runTool("bifrost-replay", [path, "--verify"])
        #expect(bad.status == 1)
        #expect(bad.stdout.contains(#""ok":false"#))
        #expect(bad.stdout.contains(#""node":"root""#))
    }

    @Test func replayVerify_detectsACheckpointThatDisagreesWithTheLog() async throws {
        let dir = TempDir()
        let (path, _) = try await makeDataDir(dir)
        do {
            let env = try LMDBEnvironment(path: path)
            let dbs = try Databases(env: env, create: false)
            var wrong = ViewState()
            wrong.apply(
                Event(
                    id: EventID(hlc: HLCTimestamp(wallMillis: 5, logical: 0), origin: NodeID(name: "ghost")),
                    payload: .weightChanged(
                        WeightChanged(keyID: "ghost-key", oldWeight: 1, newWeight: 0, reason: "", actor: ""))))
            try env.write { txn in
                let seq = try txn.get(dbs.meta, key: Schema.Meta.seq)!
                try txn.put(dbs.meta, key: Schema.Meta.checkpoint, value: seq + ViewCodec.encode(wrong))
            }
        }
        let bad = try runTool("bifrost-replay", [path, "--verify"])
        #expect(bad.status == 1)
        #expect(bad.stdout.contains("ghost-key"))
        #expect(bad.stdout.contains(#""view":"weights""#))
    }

    @Test func toolsHelp_saysWhatToDo() throws {
        for tool in ["bifrost-dump", "bifrost-replay", "bifrost-bench"] {
            let r = try runTool(tool, ["--help"])
            #expect(r.status == 0)
            #expect(r.stdout.contains("USAGE"))
        }
        let badTime = try runTool("bifrost-replay", ["/tmp", "--until", "yesterday"])
        #expect(badTime.status != 0)
    }
}
