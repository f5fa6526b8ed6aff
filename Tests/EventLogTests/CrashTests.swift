import Foundation
import Testing

@testable import EventLog

/// SIGKILL a process that appends in a loop; the reopened log must be readable, its digest
/// index must equal a recomputation, its views must replay, and no acknowledged synced event
/// may be missing.
@Suite(.serialized) struct CrashTests {
    @Test(arguments: [400, 900, 1_500])
    func sigkillDuringAppends_losesNothingAcknowledgedAsSynced(afterMillis: Int) async throws {
        let dir = TempDir("bifrost-crash")
        var acknowledged: [EventID] = []
        // Three kill/restart rounds on the same directory.
        for round in 0..<3 {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: try Binaries.path("bifrost-bench"))
            // The bound only reaps a loop a crashed test never killed: a parallel run can starve
            // this test's sleeps for tens of seconds, and the loop must still be running then.
            process.arguments = ["append-loop", "--data", dir.path, "--node", "crash-node", "--seconds", "300"]
            let out = Pipe()
            let err = Pipe()
            process.standardOutput = out
            process.standardError = err
            try process.run()
            let collected = LineCollector(out.fileHandleForReading)
            let errors = LineCollector(err.fileHandleForReading)
            let deadline = ContinuousClock.now + .seconds(20)
            while !collected.contains("ready") && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
            try await Task.sleep(for: .milliseconds(afterMillis + round * 97))
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            #expect(
                process.terminationReason == .uncaughtSignal,
                "round \(round): the loop was killed, not finished (exit \(process.terminationStatus): \(errors.lines().joined(separator: " / ")))"
            )
            for line in collected.lines() where line.hasPrefix("synced ") {
                let parts = line.split(separator: " ")
                guard parts.count == 3, let hlc = UInt64(parts[1]), let origin = NodeID(hex: String(parts[2])) else {
                    continue
                }
                acknowledged.append(EventID(hlc: HLCTimestamp(rawValue: hlc), origin: origin))
            }
            let reader = try EventLogReader.open(directory: dir.path)
            #expect(try reader.verifyDigests() == [], "round \(round)")
            for id in acknowledged {
                #expect(try reader.event(id) != nil, "acknowledged synced event \(id) lost in round \(round)")
            }
            let replayed = try reader.replay()
            let (restored, _) = try reader.restoreViews()
            #expect(ViewCodec.encode(replayed) == ViewCodec.encode(restored))
            #expect(replayed.eventCount == (try reader.stats().events))
        }
        #expect(acknowledged.count > 3, "the workload acknowledged synced events before each kill")
    }
}

/// Reads a pipe on a background thread and keeps the lines.
final class LineCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var buffer = ""

    init(_ handle: FileHandle) {
        Thread.detachNewThread { [self] in
            while true {
                let data = handle.availableData
                if data.isEmpty { return }
                lock.lock()
                buffer += String(decoding: data, as: UTF8.self)
                lock.unlock()
            }
        }
    }

    func lines() -> [String] {
        lock.lock()
        defer { lock.unlock() }
        // Only complete lines: a line cut by the kill is not an acknowledgement.
        var parts = buffer.components(separatedBy: "\n")
        parts.removeLast()
        return parts
    }

    func contains(_ line: String) -> Bool { lines().contains(line) }
}
