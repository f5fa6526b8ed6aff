import Foundation
import Synchronization
import Testing
import ToolSupport

@testable import EventLog

/// A wall clock the test moves by hand.
final class ManualWallClock: WallClock {
    private let millis: Mutex<UInt64>
    init(_ start: UInt64 = 1_764_000_000_000) { millis = Mutex(start) }
    func nowMillis() -> UInt64 { millis.withLock { $0 } }
    func set(_ value: UInt64) { millis.withLock { $0 = value } }
    func advance(by delta: UInt64) { millis.withLock { $0 += delta } }
}

/// A fresh directory under the system temp dir, removed when the value is released.
final class TempDir {
    let path: String
    init(_ label: String = "bifrost-test") {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("\(label)-\(UUID().uuidString)").path
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
    func sub(_ name: String) -> String { path + "/" + name }
}

/// Store settings that keep tests small and fast.
func testSettings(mapSize: Int = 64 << 20) -> EventStore.Settings {
    var s = EventStore.Settings()
    s.mapSizeBytes = mapSize
    s.groupCommitWindow = .microseconds(200)
    return s
}

/// Random events of every kind from `origins`, with HLCs spread over `spanMillis`.
func randomEvents(
    count: Int, seed: UInt64, origins: [String], startMillis: UInt64, spanMillis: UInt64 = 300_000
)
    -> [Event]
{
    var gen = SyntheticEvents(seed: seed)
    var rng = SplitMix64(seed: seed ^ 0xabcdef)
    var seen = Set<EventID>()
    var out: [Event] = []
    while out.count < count {
        let origin = NodeID(name: origins.randomElement(using: &rng)!)
        let wall = startMillis + UInt64.random(in: 0..<spanMillis, using: &rng)
        let id = EventID(
            hlc: HLCTimestamp(wallMillis: wall, logical: UInt16.random(in: 0..<8, using: &rng)), origin: origin)
        guard seen.insert(id).inserted else { continue }
        out.append(Event(id: id, payload: gen.payload(nowMillis: wall)))
    }
    return out
}

/// Where `swift build` put the tools (next to the test bundle).
enum Binaries {
    static var directory: URL {
        if let dir = ProcessInfo.processInfo.environment["BIFROST_BIN_DIR"] { return URL(fileURLWithPath: dir) }
        var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("bifrost-dump").path) { return url }
        }
        return URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent(".build/debug")
    }

    static func path(_ name: String) throws -> String {
        let p = directory.appendingPathComponent(name).path
        guard FileManager.default.isExecutableFile(atPath: p) else {
            throw ToolRunError(message: "\(p) is missing: run `swift build` (or `make test`) before the tests")
        }
        return p
    }
}

struct ToolRunError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

struct ToolResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs a tool to completion and captures its output.
func runTool(_ name: String, _ arguments: [String]) throws -> ToolResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: try Binaries.path(name))
    process.arguments = arguments
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    // Read before waiting so a large output cannot fill the pipe and block the child.
    let stdoutData = out.fileHandleForReading.readDataToEndOfFile()
    let stderrData = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return ToolResult(
        status: process.terminationStatus, stdout: String(decoding: stdoutData, as: UTF8.self),
        stderr: String(decoding: stderrData, as: UTF8.self))
}
