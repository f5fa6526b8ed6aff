/// Bounds how often one kind of warning is logged: at most `burst` in each `interval`, and the
/// first one logged after a quiet spell says how many were held back. Junk connections to the
/// sync port (scanners, a misconfigured peer retrying) cannot fill the log this way.
struct WarningThrottle: Sendable {
    var burst: Int
    var interval: Duration
    private var windowStart: Duration?
    private var logged = 0
    private var suppressed = 0

    init(burst: Int = 5, interval: Duration = .seconds(10)) {
        self.burst = burst
        self.interval = interval
    }

    /// Whether to log one more warning at `now`, and how many were held back since the last
    /// one logged.
    mutating func admit(now: Duration) -> (log: Bool, suppressed: Int) {
        if let start = windowStart, now - start < interval {
            guard logged < burst else {
                suppressed += 1
                return (false, 0)
            }
        } else {
            windowStart = now
            logged = 0
        }
        logged += 1
        defer { suppressed = 0 }
        return (true, suppressed)
    }
}
