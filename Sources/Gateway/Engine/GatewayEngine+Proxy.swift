import EventLog
import Foundation
import NIOCore

/// The identity a request runs under: a virtual key, or nobody when the API is open.
public struct Caller: Sendable {
    public var virtualKey: VirtualKeyTable.Entry?
}

extension GatewayEngine {
    /// Authenticates a client token; nil caller means the API is open.
    public func authenticate(authorization: String?, apiKey: String?) throws(GatewayError) -> Caller {
        let runtime = self.runtime
        guard runtime.virtualKeys.isEnabled else { return Caller(virtualKey: nil) }
        guard let token = ClientToken.extract(authorization: authorization, apiKey: apiKey) else {
            throw .unauthorized()
        }
        guard let entry = runtime.virtualKeys.lookup(token: token) else {
            throw .unauthorized("The virtual key is not known to this gateway.")
        }
        return Caller(virtualKey: entry)
    }

    /// `GET /v1/models`: the models a caller may use.
    public func models(for caller: Caller) -> JSONValue {
        let runtime = self.runtime
        var data: [JSONValue] = []
        for (model, providers) in runtime.catalog.models {
            guard let targets = runtime.catalog.byModel[model] else { continue }
            if let key = caller.virtualKey,
                !targets.contains(where: { t in key.models.contains { $0.allows(requested: model, target: t) } })
            {
                continue
            }
            data.append(
                .object([
                    "id": .string(model), "object": .string("model"), "created": .uint(0),
                    "owned_by": .string(providers.joined(separator: ",")),
                ]))
        }
        return .object(["object": .string("list"), "data": .array(data)])
    }

    /// Metrics, breakers and events a step of the request machine asks for.
    func perform(_ effect: RequestMachine.Effect) {
        switch effect {
        case .overloaded:
            metrics.overloadRejected(reason: "event_queue")
        case .logFull:
            metrics.overloadRejected(reason: "log_full")
        case .limitRejected(let scope, let unit):
            metrics.limitRejected(scope: scope, unit: unit.rawValue)
        case .fallback(let from, let to):
            metrics.fallback(from: from, to: to)
        case .breakerPanic:
            metrics.breakerPanic()
        case .judged(let key, let success):
            let now = wallClock.nowMillis()
            let state = routing.withLock { $0.record(key: key, success: success, nowMillis: now) }
            metrics.breakerState(key: key, state: state)
        case .attemptFailed(let target, let outcome, let latency):
            recordFailedAttempt(target, outcome: outcome, latency: latency)
        case .retry(let reason):
            metrics.retry(reason: reason)
        case .everyKeyFailed(let model, let detail):
            logger.warning(
                "every provider key failed", metadata: ["model": .string(model), "failures": .string(detail)])
        }
    }

    /// The seed's strategy for this request: per request type (`streaming` for streams), else
    /// `failover.request_migration`.
    func strategy(for request: ClientRequest) -> MigrationStrategy {
        let failover = baseConfig.cluster.failover
        let type = request.stream ? "streaming" : request.endpoint.rawValue
        return failover.migrationStrategies[type] ?? failover.requestMigration
    }

    /// Admission that waits briefly for confirmations when only the unconfirmed share is
    /// exhausted; returns the rejection, or nil when admitted.
    ///
    /// The wait sleeps until the next confirmation (peers acknowledged more admissions) and
    /// tries again; at the deadline it tries once more, for a window that turned meanwhile.
    func admitWaiting(_ rules: [LimitRule], estimateMicros: UInt64 = 0) async -> (RateLimitRejection?, seq: UInt64?) {
        guard !rules.isEmpty else { return (nil, nil) }
        let deadline = ContinuousClock.now + .milliseconds(250)
        var expired = false
        while true {
            let seen = admissions.confirmed.generation
            switch admit(rules, estimateMicros: estimateMicros) {
            case .admitted(let seq, _): return (nil, seq)
            case .rejected(let rejection): return (rejection, nil)
            case .awaitConfirmation(let rejection):
                if expired { return (rejection, nil) }
                expired = !(await admissions.confirmed.wait(after: seen, until: deadline))
            }
        }
    }

    /// Output tokens a request without `max_tokens` is estimated at, for budgets.
    static let defaultOutputEstimate = 256

    /// What a request may cost, held against its budgets while it runs: its body as input
    /// (about 4 bytes a token) and its `max_tokens` (else `defaultOutputEstimate`) as output, at
    /// the dearest price among the keys that may serve its model; 0 when none is priced.
    static func estimatedCost(_ request: ClientRequest, runtime: RuntimeConfig) -> UInt64 {
        guard let targets = runtime.catalog.resolve(request.model)?.targets else { return 0 }
        let output = max(0, request.fields["max_tokens"]?.intValue ?? defaultOutputEstimate)
        let usage = Usage(input: max(1, request.original.count / 4), output: output)
        var dearest: UInt64 = 0
        for t in targets {
            if let cost = runtime.prices.microUSD(usage, keyID: t.keyID, model: t.model) {
                dearest = max(dearest, cost)
            }
        }
        return dearest
    }

    /// A failed attempt counts against its key's error rate even when another key then serves
    /// the request: the weight controller and the alert rules judge keys by these. No limit keys,
    /// so token counters are untouched.
    func recordFailedAttempt(_ target: ModelTarget, outcome: UpstreamOutcome, latency: Duration) {
        let (status, usageOutcome): (Int, UsageOutcome) =
            switch outcome {
            case .success: (200, .success)
            case .status(429): (429, .rateLimited)
            // A key the provider refuses (401/403) counts against that key.
            case .status(let s): (s, s >= 500 || RetryPolicy.isKeyFailure(outcome) ? .upstreamError : .clientError)
            case .timeout: (504, .timeout)
            case .connectFailed: (502, .upstreamError)
            }
        let now = wallClock.nowMillis()
        // Nothing was billed for a refused attempt: a priced target records $0, an unpriced one no cost.
        let prices = runtime.prices
        let priced = prices.price(keyID: target.keyID, model: target.model) != nil
        recorder.record(
            .usageRecorded(
                UsageRecorded(
                    requestID: "", keyID: target.keyID, model: target.model, limitKeys: [],
                    windowStartMillis: now / 60_000 * 60_000, windowMillis: 60_000, tokensIn: 0, tokensOut: 0,
                    latencyMicros: UInt32(clamping: latency.wholeMicroseconds), status: UInt16(clamping: status),
                    outcome: usageOutcome, costMicros: priced ? 0 : nil, priceVersion: priced ? prices.version : "")))
    }

    /// How much of a refused attempt's body is read for its error code.
    static let errorDetailBytes = 64 << 10

    /// The provider's error code (`error.code`, else `error.type`) of a refused attempt's body,
    /// for the failure summary. Never its message or raw body: providers quote part of the key there
    /// ("Incorrect API key provided: sk-…9999").
    static func errorDetail(_ body: ByteBuffer) -> String {
        guard let json = try? JSONValue(parsing: Array(body.readableBytesView)),
            let code = json["error"]?["code"]?.stringValue ?? json["error"]?["type"]?.stringValue
                ?? json["type"]?.stringValue
        else { return "" }
        let safe = code.prefix(64).filter { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" || $0 == "." }
        return String(safe)
    }
}
