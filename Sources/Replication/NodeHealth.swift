import EventLog
import Foundation

/// A node's vital signs, piggybacked on gossip (at most `SWIM.maxHealthBytes`) and shown per
/// node in `/cluster/nodes`.
public struct NodeHealth: Hashable, Sendable {
    /// Process CPU use over the last sampling period, percent of one core.
    public var cpuPercent: Double = 0
    public var residentMemoryBytes: UInt64 = 0
    public var inFlightRequests: UInt32 = 0
    /// How late a timer on the node's event loops fired, a proxy for overload.
    public var eventLoopLagMillis: Double = 0
    public var logBytes: UInt64 = 0
    public var logEvents: UInt64 = 0

    public init() {}

    public var bytes: [UInt8] {
        var w = ByteWriter(capacity: 48)
        w.write(UInt8(1))
        w.write(varint: UInt64(max(0, cpuPercent * 10).rounded()))
        w.write(varint: residentMemoryBytes)
        w.write(varint: UInt64(inFlightRequests))
        w.write(varint: UInt64(max(0, eventLoopLagMillis * 10).rounded()))
        w.write(varint: logBytes)
        w.write(varint: logEvents)
        return w.bytes
    }

    /// Decodes what a peer gossiped; unknown or damaged input gives nil (health is advisory).
    public init?(bytes: [UInt8]) {
        guard !bytes.isEmpty else { return nil }
        do {
            self = try bytes.withUnsafeBytes { buffer throws(DecodingError) -> NodeHealth in
                var r = ByteReader(buffer)
                guard try r.readByte() == 1 else { throw DecodingError(offset: 0, reason: "health version") }
                var h = NodeHealth()
                h.cpuPercent = Double(try r.readVarint()) / 10
                h.residentMemoryBytes = try r.readVarint()
                h.inFlightRequests = try r.readVarint(UInt32.self, "in_flight")
                h.eventLoopLagMillis = Double(try r.readVarint()) / 10
                h.logBytes = try r.readVarint()
                h.logEvents = try r.readVarint()
                return h
            }
        } catch {
            return nil
        }
    }

    public var json: JSONValue {
        .object([
            "cpu_percent": .double(cpuPercent), "memory_bytes": .uint(residentMemoryBytes),
            "in_flight_requests": .uint(UInt64(inFlightRequests)), "event_loop_lag_ms": .double(eventLoopLagMillis),
            "log_bytes": .uint(logBytes), "log_events": .uint(logEvents),
        ])
    }

    /// Samples this process: CPU since the previous sample, resident memory from /proc.
    public struct Sampler: Sendable {
        private var lastCPU: Double
        private var lastWall: ContinuousClock.Instant

        public init() {
            lastCPU = Self.processCPUSeconds()
            lastWall = .now
        }

        public mutating func sample() -> (cpuPercent: Double, residentBytes: UInt64) {
            let cpu = Self.processCPUSeconds()
            let wall = ContinuousClock.now
            let elapsed = wall - lastWall
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
            let percent = seconds > 0 ? (cpu - lastCPU) / seconds * 100 : 0
            lastCPU = cpu
            lastWall = wall
            return (percent, Self.residentBytes())
        }

        /// User + system CPU time of this process so far.
        public static func processCPUSeconds() -> Double {
            var usage = rusage()
            getrusage(RUSAGE_SELF.rawValue, &usage)
            return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
                + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
        }

        static func residentBytes() -> UInt64 {
            guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
            let fields = text.split(separator: " ")
            guard fields.count > 1, let pages = UInt64(fields[1]) else { return 0 }
            return pages * UInt64(sysconf(Int32(_SC_PAGESIZE)))
        }
    }
}
