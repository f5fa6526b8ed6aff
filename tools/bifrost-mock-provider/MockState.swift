import NIOCore

/// What the command line configures; every field has the default of a plain `--port P` run.
struct MockSettings: Sendable {
    /// Delay before each `/v1` response, or before the first event of a stream.
    var latency: Duration = .zero
    /// Delay between the content events of a stream.
    var streamChunkInterval: Duration = .zero
    /// Fraction in [0, 1] of admitted `/v1` requests answered with 500.
    var errorRate: Double = 0
    /// Requests allowed per 60-second fixed window; `nil` means no limit.
    var rateLimitRPM: Int?
    /// Seed of the RNG behind `errorRate`.
    var seed: UInt64 = 1
}

/// The rate-limit window as the `x-ratelimit-*` and `retry-after` headers report it.
struct RateLimitStatus: Sendable, Equatable {
    var limit: Int?
    var remaining: Int
    /// Seconds until the window ends, at least 1.
    var resetAfterSeconds: Int64
    /// Unix time at which the window ends.
    var resetAtSeconds: Int64
}

/// A fault for the requests of one upstream key: answer with `status`, or wait `latency` first.
struct KeyFault: Sendable, Equatable {
    var status: Int?
    var latency: Duration?
}

/// What `MockState.onRequest` decides for a request that passed the key check.
struct Admission: Sendable, Equatable {
    enum Verdict: Sendable, Equatable {
        case proceed
        case rateLimited
        case injectedError
    }

    var verdict: Verdict
    /// Set when `--rate-limit-rpm` is on, for the headers of every response.
    var rateLimit: RateLimitStatus?
}

/// The mock's decisions and counters, with no I/O: the shell passes the time in and takes
/// verdicts out, so a test replays any sequence exactly.
///
/// The rate limit is a fixed window aligned to wall-clock minutes (`now / 60`): every admitted
/// request counts, and the ones beyond `rateLimitRPM` in the window get 429. The error RNG is only
/// drawn for requests under the limit, so `--seed` with one sequential client fails the same
/// requests on every run.
struct MockState {
    private let errorRate: Double
    private let rateLimitRPM: Int?
    private var rng: SplitMix64
    private var windowMinute: Int64 = .min
    private var windowCount = 0
    private(set) var stats = MockStats()
    /// Faults set through `PUT /mock/keys/{suffix}`, by the key's last 4 characters.
    private(set) var keyFaults: [String: KeyFault] = [:]

    init(settings: MockSettings) {
        self.errorRate = settings.errorRate
        self.rateLimitRPM = settings.rateLimitRPM
        self.rng = SplitMix64(seed: settings.seed)
    }

    /// Counts a request with a valid key against the window, then draws the injected error.
    mutating func onRequest(nowSeconds: Int64) -> Admission {
        var status: RateLimitStatus?
        if let rpm = rateLimitRPM {
            let minute = nowSeconds.floorDivided(by: 60)
            if minute != windowMinute {
                windowMinute = minute
                windowCount = 0
            }
            windowCount += 1
            let resetAt = (minute + 1) * 60
            status = RateLimitStatus(
                limit: rpm, remaining: max(0, rpm - windowCount), resetAfterSeconds: resetAt - nowSeconds,
                resetAtSeconds: resetAt)
            if windowCount > rpm { return Admission(verdict: .rateLimited, rateLimit: status) }
        }
        if errorRate > 0, rng.nextUnitInterval() < errorRate {
            return Admission(verdict: .injectedError, rateLimit: status)
        }
        return Admission(verdict: .proceed, rateLimit: status)
    }

    /// The headers of a 429 forced with `x-mock-status`: the current window if there is one,
    /// else "retry after one second".
    func forcedRateLimit(nowSeconds: Int64) -> RateLimitStatus {
        let minute = nowSeconds.floorDivided(by: 60)
        if let rpm = rateLimitRPM {
            let resetAt = (minute + 1) * 60
            let used = minute == windowMinute ? windowCount : 0
            return RateLimitStatus(
                limit: rpm, remaining: max(0, rpm - used), resetAfterSeconds: resetAt - nowSeconds,
                resetAtSeconds: resetAt)
        }
        return RateLimitStatus(limit: nil, remaining: 0, resetAfterSeconds: 1, resetAtSeconds: nowSeconds + 1)
    }

    mutating func setFault(_ fault: KeyFault?, keySuffix: String) { keyFaults[keySuffix] = fault }

    /// Records a response for `GET /mock/stats`.
    mutating func onResponse(path: String, status: Int, keySuffix: String, model: String?) {
        stats.record(path: path, status: status, keySuffix: keySuffix, model: model)
    }

    /// A streamed reply ended: written to its end, or cut off because the client went away.
    mutating func onStreamEnded(completed: Bool) {
        stats.recordStream(completed: completed)
    }

    mutating func onReset() {
        stats = MockStats()
    }
}

/// Counters behind `GET /mock/stats`. Keys appear only as their last 4 characters.
struct MockStats: Sendable {
    private(set) var requests = 0
    /// path → status → count
    private(set) var byPathStatus: [String: [Int: Int]] = [:]
    private(set) var byKeySuffix: [String: Int] = [:]
    private(set) var byModel: [String: Int] = [:]
    /// Streamed replies written to their end, and cut off because the client left first.
    private(set) var streamsCompleted = 0
    private(set) var streamsClosedEarly = 0

    mutating func recordStream(completed: Bool) {
        if completed { streamsCompleted += 1 } else { streamsClosedEarly += 1 }
    }

    mutating func record(path: String, status: Int, keySuffix: String, model: String?) {
        requests += 1
        byPathStatus[path, default: [:]][status, default: 0] += 1
        byKeySuffix[keySuffix, default: 0] += 1
        if let model { byModel[model, default: 0] += 1 }
    }

    /// `{"requests":N,"by_path":{…},"by_status":{…},"by_path_status":{path:{status:n}},
    /// "by_key_suffix":{…},"by_model":{…},"streams_completed":N,"streams_closed_early":N}`, keys
    /// sorted.
    func json() -> ByteBuffer {
        var byPath: [String: Int] = [:]
        var byStatus: [String: Int] = [:]
        var byPathStatusText: [String: [String: Int]] = [:]
        for (path, statuses) in byPathStatus {
            for (status, count) in statuses {
                byPath[path, default: 0] += count
                byStatus[String(status), default: 0] += count
                byPathStatusText[path, default: [:]][String(status)] = count
            }
        }
        var out = ByteBufferAllocator().buffer(capacity: 512)
        out.writeStaticString(#"{"requests":"#)
        out.writeString(String(requests))
        out.writeStaticString(#","by_path":"#)
        out.writeJSONCounts(byPath)
        out.writeStaticString(#","by_status":"#)
        out.writeJSONCounts(byStatus)
        out.writeStaticString(#","by_path_status":{"#)
        for (i, path) in byPathStatusText.keys.sorted().enumerated() {
            if i > 0 { out.writeStaticString(",") }
            out.writeJSONString(path)
            out.writeStaticString(":")
            out.writeJSONCounts(byPathStatusText[path]!)
        }
        out.writeStaticString(#"},"by_key_suffix":"#)
        out.writeJSONCounts(byKeySuffix)
        out.writeStaticString(#","by_model":"#)
        out.writeJSONCounts(byModel)
        out.writeStaticString(#","streams_completed":"#)
        out.writeString(String(streamsCompleted))
        out.writeStaticString(#","streams_closed_early":"#)
        out.writeString(String(streamsClosedEarly))
        out.writeStaticString("}")
        return out
    }
}

/// SplitMix64 (Steele, Lea, Flood: "Fast splittable pseudorandom number generators", OOPSLA 2014):
/// tiny, seedable, and good enough for fault injection and mock embeddings.
struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1), from the top 53 bits.
    mutating func nextUnitInterval() -> Double {
        Double(next() >> 11) * 0x1p-53
    }
}

extension Int64 {
    /// Division rounding toward negative infinity, so times before 1970 still land in whole minutes.
    fileprivate func floorDivided(by divisor: Int64) -> Int64 {
        let (q, r) = quotientAndRemainder(dividingBy: divisor)
        return r < 0 ? q - 1 : q
    }
}
