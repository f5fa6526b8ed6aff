#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A hybrid logical clock timestamp: 48 bits of Unix milliseconds ‖ 16 bits of logical counter.
///
/// Kulkarni, Demirbas et al., "Logical Physical Clocks and Consistent Snapshots in Globally
/// Distributed Databases" (2014), §3. Packing both parts in one `UInt64` makes the raw value
/// totally ordered the same way as the pair `(wall, logical)`, so it sorts correctly as a
/// big-endian LMDB key.
public struct HLCTimestamp: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64

    public static let logicalBits: UInt64 = 16
    public static let logicalMax: UInt64 = (1 << logicalBits) - 1
    public static let wallMax: UInt64 = (1 << 48) - 1
    public static let zero = HLCTimestamp(rawValue: 0)
    public static let max = HLCTimestamp(rawValue: .max)

    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public init(wallMillis: UInt64, logical: UInt16) {
        precondition(wallMillis <= Self.wallMax, "HLC wall time \(wallMillis) ms does not fit in 48 bits")
        self.rawValue = wallMillis << Self.logicalBits | UInt64(logical)
    }

    /// Unix milliseconds of the physical part.
    public var wallMillis: UInt64 { rawValue >> Self.logicalBits }
    /// The logical counter that orders events within one millisecond.
    public var logical: UInt16 { UInt16(truncatingIfNeeded: rawValue) }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }

    public var description: String { "\(wallMillis).\(logical)" }
}

/// The pure HLC state machine. It does no I/O: the caller passes the physical time in, which
/// makes every rule table-testable and lets the simulator drive skewed and jumping clocks.
///
/// Rules (DESIGN §2):
/// - send/local: `l' = max(l, pt)`; `c' = l' == l ? c + 1 : 0`.
/// - receive: `l' = max(l, l_m, pt)`; `c'` follows the three-way rule of the paper (Fig. 5).
/// - a remote timestamp more than `maxOffsetMillis` ahead of `pt` is rejected and the clock
///   does not move (CockroachDB's `MaxOffset` check), so one bad peer cannot drag the cluster
///   into the future.
/// - logical overflow advances the wall part by 1 ms instead of wrapping.
public struct HybridLogicalClock: Sendable, Equatable {
    public private(set) var last: HLCTimestamp
    public var maxOffsetMillis: UInt64

    public init(last: HLCTimestamp = .zero, maxOffsetMillis: UInt64 = 500) {
        self.last = last
        self.maxOffsetMillis = maxOffsetMillis
    }

    /// Timestamp for a local or send event.
    public mutating func now(physicalMillis pt: UInt64) -> HLCTimestamp {
        let pt = Swift.min(pt, HLCTimestamp.wallMax)
        let l = last.wallMillis
        if pt > l {
            last = HLCTimestamp(wallMillis: pt, logical: 0)
        } else {
            last = Self.increment(wall: l, logical: UInt64(last.logical))
        }
        return last
    }

    public enum ReceiveError: Error, Equatable, Sendable {
        /// The remote timestamp is further ahead of local physical time than the allowed offset.
        case beyondMaxOffset(remote: HLCTimestamp, physicalMillis: UInt64, maxOffsetMillis: UInt64)
    }

    /// Merges a remote timestamp; returns the new local timestamp, or throws without touching
    /// the clock when the remote is too far in the future.
    @discardableResult
    public mutating func receive(
        _ remote: HLCTimestamp, physicalMillis pt: UInt64
    ) throws(ReceiveError)
        -> HLCTimestamp
    {
        let pt = Swift.min(pt, HLCTimestamp.wallMax)
        if remote.wallMillis > pt &+ maxOffsetMillis {
            throw .beyondMaxOffset(remote: remote, physicalMillis: pt, maxOffsetMillis: maxOffsetMillis)
        }
        let l = last.wallMillis
        let lm = remote.wallMillis
        let wall = Swift.max(l, lm, pt)
        let c: UInt64
        if wall == l && wall == lm {
            c = Swift.max(UInt64(last.logical), UInt64(remote.logical)) + 1
        } else if wall == l {
            c = UInt64(last.logical) + 1
        } else if wall == lm {
            c = UInt64(remote.logical) + 1
        } else {
            c = 0
        }
        last =
            c > HLCTimestamp.logicalMax
            ? Self.increment(wall: wall, logical: c - 1) : HLCTimestamp(wallMillis: wall, logical: UInt16(c))
        return last
    }

    /// Moves the clock to at least `bound` (used at start-up with the persisted upper bound so the
    /// clock never goes backwards across restarts, even if the machine's clock did).
    public mutating func advance(toAtLeast bound: HLCTimestamp) {
        if bound > last { last = bound }
    }

    private static func increment(wall: UInt64, logical: UInt64) -> HLCTimestamp {
        if logical >= HLCTimestamp.logicalMax {
            return HLCTimestamp(wallMillis: wall + 1, logical: 0)
        }
        return HLCTimestamp(wallMillis: wall, logical: UInt16(logical + 1))
    }
}

/// The physical time source a store reads. Injected so tests and the simulator control time.
public protocol WallClock: Sendable {
    /// Unix time in milliseconds.
    func nowMillis() -> UInt64
}

/// The machine's real-time clock.
public struct SystemWallClock: WallClock {
    public init() {}
    public func nowMillis() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UInt64(ts.tv_sec) * 1000 + UInt64(ts.tv_nsec) / 1_000_000
    }
}
