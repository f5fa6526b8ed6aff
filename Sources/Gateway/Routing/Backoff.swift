/// Exponential backoff with full jitter: attempt n waits a uniform random time in
/// `[0, min(cap, base × 2ⁿ)]` ("Exponential Backoff And Jitter", AWS Architecture Blog).
public struct Backoff: Sendable, Equatable {
    public var baseMillis: UInt64
    public var capMillis: UInt64

    public init(baseMillis: UInt64 = 50, capMillis: UInt64 = 2_000) {
        self.baseMillis = baseMillis
        self.capMillis = capMillis
    }

    /// Delay before retry number `attempt` (0 for the first retry).
    public func delayMillis(attempt: Int, using rng: inout some RandomNumberGenerator) -> UInt64 {
        let shift = UInt64(min(max(attempt, 0), 30))
        // base × 2ⁿ saturates at the cap instead of wrapping when it does not fit in 64 bits.
        let (scaled, overflow) = baseMillis.multipliedReportingOverflow(by: 1 << shift)
        let ceiling = overflow ? capMillis : min(capMillis, scaled)
        return ceiling == 0 ? 0 : UInt64.random(in: 0...ceiling, using: &rng)
    }
}

/// How one upstream attempt ended.
public enum UpstreamOutcome: Sendable, Equatable {
    case success
    case status(Int)
    case timeout
    case connectFailed
}

/// What to do after an attempt.
public enum RetryDecision: Sendable, Equatable {
    /// The response (success, or the client's own mistake) goes back to the client as is.
    case done
    /// Try again, on another key when one is eligible; `backoff` says whether to wait first.
    case retry(backoff: Bool)
    /// The key is unusable for this request (revoked or forbidden): try another at once.
    case keyBad
}

/// The retry rules of issue C: 429 → another key after a backoff; 5xx, timeouts and connection
/// failures → retry with backoff; 401/403 → the key is bad for this request, no backoff; any
/// other 4xx is the client's and returns as is.
public enum RetryPolicy {
    public static func decide(_ outcome: UpstreamOutcome) -> RetryDecision {
        switch outcome {
        case .success: .done
        case .timeout, .connectFailed: .retry(backoff: true)
        case .status(let code):
            switch code {
            case 200..<300: .done
            case 401, 403: .keyBad
            case 408, 409, 429: .retry(backoff: true)
            case 500...599: .retry(backoff: true)
            default: .done
            }
        }
    }

    /// Whether the outcome counts against the key's breaker.
    public static func isKeyFailure(_ outcome: UpstreamOutcome) -> Bool {
        switch outcome {
        case .success: false
        case .timeout, .connectFailed: true
        case .status(let code): code == 429 || code >= 500 || code == 401 || code == 403
        }
    }
}
