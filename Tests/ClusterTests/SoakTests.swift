import Foundation
import Testing

extension MultiProcess {
    /// A short soak (`bifrost-bench soak`): 3 real nodes at a fixed rate with a 1-minute horizon.
    /// Once compaction keeps up, the log stops growing, and every node compacted the same ranges
    /// to the same aggregates (identical root digests).
    @Suite(.serialized, .timeLimit(.minutes(4))) struct SoakTests {
        @Test func steadyTraffic_pastTheHorizon_logStopsGrowing_andDigestsAgree() async throws {
            let bench = ClusterHarness.findBinaries().appendingPathComponent("bifrost-bench")
            let process = Process()
            process.executableURL = bench
            process.arguments = [
                "soak", "--nodes", "3", "--minutes", "1.75", "--rate", "100", "--horizon", "1m", "--interval", "2s",
                "--sample", "5", "--json",
            ]
            let output = Pipe()
            process.standardOutput = output
            process.standardError = FileHandle.nullDevice
            try process.run()
            StartedProcesses.add(process.processIdentifier)
            let data = output.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            StartedProcesses.remove(process.processIdentifier)
            let report = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])

            #expect(report["root_digests_identical"] as? Bool == true)
            #expect((report["requests_failed"] as? NSNumber)?.intValue == 0)
            #expect(((report["requests_served"] as? NSNumber)?.intValue ?? 0) > 8_000)
            let samples = try #require(report["samples"] as? [[String: Any]])
            for node in 0..<3 {
                let mine = samples.filter { ($0["node"] as? NSNumber)?.intValue == node }
                func bytes(_ s: [String: Any]) -> Double { (s["data_mdb_bytes"] as? NSNumber)?.doubleValue ?? 0 }
                func t(_ s: [String: Any]) -> Double { (s["t"] as? NSNumber)?.doubleValue ?? 0 }
                // From a quarter horizon after the first compaction on, the file does not grow.
                let settled = try #require(mine.first { t($0) >= 75 })
                let last = try #require(mine.last)
                #expect(bytes(last) <= bytes(settled) * 1.05, "node \(node): \(bytes(settled)) → \(bytes(last))")
                // Before the horizon it grew with the traffic.
                let early = try #require(mine.first { t($0) >= 20 })
                #expect(bytes(settled) > bytes(early))
            }
            let perNode = try #require(report["per_node"] as? [[String: Any]])
            let compacted = perNode.map { ($0["compacted_events"] as? NSNumber)?.intValue ?? 0 }
            #expect(compacted.allSatisfy { $0 > 1_000 }, "\(compacted)")
        }
    }
}
