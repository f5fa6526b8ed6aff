extension Duration {
    /// Whole milliseconds, a negative duration as zero: the unit the routing and control
    /// machines count time in.
    var wholeMilliseconds: UInt64 {
        let (seconds, attoseconds) = components
        return UInt64(max(0, seconds)) * 1000 + UInt64(max(0, attoseconds)) / 1_000_000_000_000_000
    }

    /// Whole microseconds: the unit of `usage.recorded` latencies.
    var wholeMicroseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000 + attoseconds / 1_000_000_000_000
    }
}
