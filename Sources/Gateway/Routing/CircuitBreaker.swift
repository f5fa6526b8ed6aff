/// A provider key's circuit breaker: closed → open → half-open → closed, driven by the caller's
/// clock (Unix milliseconds in, no timers).
///
/// It opens after `failureThreshold` consecutive failures, or when at least `minimumSamples`
/// of the last `windowSize` outcomes hold `failureRateThreshold` failures. Open, it refuses
/// requests for `openDuration`; then it lets one probe through (half-open). A successful probe
/// closes it; a failed one reopens it for twice as long, up to `maxOpenDuration`.
public struct CircuitBreaker: Sendable, Equatable {
    public struct Settings: Sendable, Equatable {
        public var failureThreshold = 5
        public var failureRateThreshold = 0.5
        public var windowSize = 20
        public var minimumSamples = 10
        /// The config's `failover.recovery_timeout`.
        public var openDuration: Duration = .seconds(30)
        public var maxOpenDuration: Duration = .seconds(300)

        public init() {}
    }

    public enum State: Sendable, Equatable {
        case closed
        case open(untilMillis: UInt64)
        /// One probe is allowed; `probing` once it is out.
        case halfOpen(probing: Bool)

        /// The name used in metrics and JSON.
        public var name: String {
            switch self {
            case .closed: "closed"
            case .open: "open"
            case .halfOpen: "half_open"
            }
        }
    }

    public let settings: Settings
    public private(set) var state: State = .closed
    private var consecutiveFailures = 0
    private var outcomes: [Bool] = []
    private var nextOutcome = 0
    private var currentOpenMillis: UInt64

    public init(settings: Settings = Settings()) {
        self.settings = settings
        currentOpenMillis = settings.openDuration.wholeMilliseconds
    }

    /// Whether a request could be let through now, without taking the half-open probe.
    public func canAttempt(nowMillis: UInt64) -> Bool {
        switch state {
        case .closed: true
        case .open(let until): nowMillis >= until
        case .halfOpen(let probing): !probing
        }
    }

    /// Asks to send a request; in half-open, only the first caller gets the probe.
    public mutating func allowRequest(nowMillis: UInt64) -> Bool {
        switch state {
        case .closed:
            return true
        case .open(let until):
            guard nowMillis >= until else { return false }
            state = .halfOpen(probing: true)
            return true
        case .halfOpen(let probing):
            guard !probing else { return false }
            state = .halfOpen(probing: true)
            return true
        }
    }

    /// Records an outcome. With `mayOpen` false (the ejection cap of the key's models is reached)
    /// a closed breaker keeps counting but stays closed; it opens on a later failure once allowed.
    public mutating func record(success: Bool, nowMillis: UInt64, mayOpen: Bool = true) {
        switch state {
        case .halfOpen:
            if success {
                close()
            } else {
                currentOpenMillis = min(currentOpenMillis * 2, settings.maxOpenDuration.wholeMilliseconds)
                state = .open(untilMillis: nowMillis + currentOpenMillis)
            }
        case .open:
            // A request let through before the breaker opened finished late: nothing to learn.
            break
        case .closed:
            consecutiveFailures = success ? 0 : consecutiveFailures + 1
            if outcomes.count < settings.windowSize {
                outcomes.append(success)
            } else {
                outcomes[nextOutcome] = success
                nextOutcome = (nextOutcome + 1) % settings.windowSize
            }
            let failures = outcomes.lazy.filter { !$0 }.count
            let rateTripped =
                outcomes.count >= settings.minimumSamples
                && Double(failures) >= settings.failureRateThreshold * Double(outcomes.count)
            if mayOpen && (consecutiveFailures >= settings.failureThreshold || rateTripped) {
                currentOpenMillis = settings.openDuration.wholeMilliseconds
                state = .open(untilMillis: nowMillis + currentOpenMillis)
            }
        }
    }

    /// Opens the breaker until a time (the weight controller's temporary circuit break).
    public mutating func forceOpen(untilMillis: UInt64) {
        state = .open(untilMillis: untilMillis)
    }

    /// Milliseconds until a request may be tried again; nil when one may be tried now.
    public func retryAfterMillis(nowMillis: UInt64) -> UInt64? {
        if case .open(let until) = state, until > nowMillis { return until - nowMillis }
        return nil
    }

    private mutating func close() {
        state = .closed
        consecutiveFailures = 0
        outcomes.removeAll(keepingCapacity: true)
        nextOutcome = 0
        currentOpenMillis = settings.openDuration.wholeMilliseconds
    }
}
