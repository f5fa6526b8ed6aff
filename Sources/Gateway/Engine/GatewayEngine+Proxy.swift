import EventLog
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// The identity a request runs under: a virtual key, or nobody when the API is open.
public struct Caller: Sendable {
    public var virtualKey: VirtualKeyTable.Entry?
}

/// What one request did, for its `usage.recorded` event and metrics.
struct RequestRecord: Sendable {
    var target: ModelTarget?
    /// The limit rules of `target` (its key's and its provider/model's), as admitted.
    var targetRules: [LimitRule] = []
    var status = 0
    var outcome = UsageOutcome.success
    var usage = Usage()
    var upstreamTime: Duration = .zero
    /// The last attempt failed and its `usage.recorded` is written already; the request's own
    /// record would count that failure twice.
    var failedAttemptRecorded = false
    /// The serving attempt's own latency (to the response head for streams): what the key
    /// performance view judges a key by, without earlier attempts, backoff or limiter waits.
    var attemptLatency: Duration?
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

    /// Runs one client request to completion (or to the start of its stream).
    public func handle(_ request: ClientRequest, caller: Caller, started: ContinuousClock.Instant) async -> Response {
        let api = request.endpoint.api
        metrics.requestStarted()
        var record = RequestRecord()
        var streaming = false
        var migrated = false
        // The caller's own limits, admitted once per request (a migrated request was admitted at
        // its origin, but its usage still counts against them).
        let callerRules = caller.virtualKey.map(Self.rules(for:)) ?? []
        defer {
            if !streaming {
                metrics.requestEnded()
                finish(request, rules: callerRules + record.targetRules, record: record, started: started)
            }
            migrationWindow.withLock { $0.record(nowMillis: wallClock.nowMillis(), migrated: migrated) }
        }
        // A writer that fell behind refuses new work rather than queue its events without bound.
        guard recorder.hasRoom else {
            metrics.overloadRejected(reason: "event_queue")
            record.status = 503
            record.outcome = .upstreamError
            return GatewayError.overloaded().response(api: api)
        }
        let runtime = self.runtime
        let strategy = self.strategy(for: request)
        // One hop at most: a migrated request is served where it lands.
        let mayMigrate = strategy == .migrateToHealthy && request.migratedFrom == nil
        if mayMigrate && isDraining, let response = await migrate(request, caller: caller, strategy: strategy) {
            migrated = true
            record.status = Int(response.status.code)
            return response
        }
        // The chain of models to try: the requested one, then the body's and the config's fallbacks.
        var chain = [request.model]
        for m in request.fallbacks + (runtime.config.gateway.fallbacks[request.model] ?? []) where !chain.contains(m) {
            chain.append(m)
        }
        guard let first = runtime.catalog.resolve(request.model) else {
            record.status = 404
            record.outcome = .clientError
            return GatewayError.unknownModel(request.model).response(api: api)
        }
        if let key = caller.virtualKey, !allowed(key, request.model, first.targets) {
            record.status = 403
            record.outcome = .clientError
            return GatewayError.modelNotAllowed(request.model).response(api: api)
        }
        if request.migratedFrom == nil, let rejection = await admitWaiting(callerRules) {
            metrics.limitRejected(scope: "vk", unit: rejection.unit.rawValue)
            record.status = 429
            record.outcome = .rateLimited
            return GatewayError.rateLimited(rejection).response(api: api)
        }
        var failures: [String] = []
        var lastError: GatewayError?
        // retry_with_backoff runs the whole chain again after a backoff, within the deadline.
        let rounds = strategy == .retryWithBackoff ? 3 : 1
        let deadline =
            ContinuousClock.now + (runtime.catalog.providers[first.targets[0].provider]?.timeout ?? .seconds(60))
        for round in 0..<rounds {
            if round > 0 {
                let settings = runtime.config.gateway
                let backoff = Backoff(
                    baseMillis: settings.backoffBase.wholeMilliseconds * 4,
                    capMillis: settings.backoffMax.wholeMilliseconds)
                let delay = rng.withLock { backoff.delayMillis(attempt: round, using: &$0) }
                guard ContinuousClock.now + .milliseconds(delay) < deadline else { break }
                metrics.retry(reason: "round")
                try? await Task.sleep(for: .milliseconds(delay))
            }
            for (index, name) in chain.enumerated() {
                guard let resolution = index == 0 ? first : runtime.catalog.resolve(name) else { continue }
                if let key = caller.virtualKey, !allowed(key, name, resolution.targets) { continue }
                if index > 0 { metrics.fallback(from: chain[index - 1], to: name) }
                let result = await attempt(
                    request, route: resolution, runtime: runtime, callerRules: callerRules,
                    maxAttempts: strategy == .circuitBreaker ? 1 : runtime.config.gateway.maxAttempts,
                    record: &record, failures: &failures)
                switch result {
                case .response(let response, let isStream):
                    streaming = isStream
                    return response
                case .exhausted(let error):
                    lastError = error
                }
            }
            if lastError?.status == 429 { break }
        }
        let error =
            lastError
            ?? (failures.isEmpty
                ? .noHealthyKey(model: request.model)
                : .allKeysFailed(model: request.model, summary: failures.joined(separator: "; ")))
        if mayMigrate && error.status >= 500, let response = await migrate(request, caller: caller, strategy: strategy)
        {
            migrated = true
            record.target = nil
            record.status = Int(response.status.code)
            return response
        }
        record.status = error.status
        record.outcome = error.status == 504 ? .timeout : .upstreamError
        return error.response(api: api)
    }

    /// The seed's strategy for this request: per request type (`streaming` for streams), else
    /// `failover.request_migration`.
    func strategy(for request: ClientRequest) -> MigrationStrategy {
        let failover = baseConfig.cluster.failover
        let type = request.stream ? "streaming" : request.endpoint.rawValue
        return failover.migrationStrategies[type] ?? failover.requestMigration
    }

    func allowed(_ key: VirtualKeyTable.Entry, _ requested: String, _ targets: [ModelTarget]) -> Bool {
        targets.contains { t in key.models.contains { $0.allows(requested: requested, target: t) } }
    }

    /// Admission that waits briefly for confirmations when only the unconfirmed share is
    /// exhausted; returns the rejection, or nil when admitted.
    ///
    /// The wait sleeps until the next confirmation (peers acknowledged more admissions) and
    /// tries again; at the deadline it tries once more, for a window that turned meanwhile.
    func admitWaiting(_ rules: [LimitRule]) async -> RateLimitRejection? {
        guard !rules.isEmpty else { return nil }
        let deadline = ContinuousClock.now + .milliseconds(250)
        var expired = false
        while true {
            let seen = admissions.confirmed.generation
            switch admit(rules) {
            case .admitted: return nil
            case .rejected(let rejection): return rejection
            case .awaitConfirmation(let rejection):
                if expired { return rejection }
                expired = !(await admissions.confirmed.wait(after: seen, until: deadline))
            }
        }
    }

    enum AttemptResult {
        case response(Response, isStream: Bool)
        /// Every key of the route failed; `error` when it should be the final answer.
        case exhausted(GatewayError?)
    }

    /// Tries the keys of one model route, with retries and backoff, until one answers.
    func attempt(
        _ request: ClientRequest, route: Catalog.Resolution, runtime: RuntimeConfig, callerRules: [LimitRule],
        maxAttempts: Int, record: inout RequestRecord, failures: inout [String]
    ) async -> AttemptResult {
        let api = request.endpoint.api
        let settings = runtime.config.gateway
        let backoff = Backoff(
            baseMillis: settings.backoffBase.wholeMilliseconds,
            capMillis: settings.backoffMax.wholeMilliseconds)
        // Keys that cannot serve this request at all, and keys already tried.
        var unusable = Set(runtime.unusableKeys.keys)
        // Embeddings only exist on OpenAI-API providers.
        if request.endpoint == .embeddings {
            for t in route.targets where runtime.catalog.providers[t.provider]?.api(for: .embeddings) != .openAI {
                unusable.insert(t.keyID)
            }
        }
        var tried: Set<String> = []
        var limitRejection: RateLimitRejection?
        var attempts = 0
        while attempts < maxAttempts {
            let now = wallClock.nowMillis()
            // Untried keys first; a key is retried only when every usable one was tried.
            let pick = routing.withLock { state in
                state.pick(
                    route: route.routeName, targets: route.targets, excluded: unusable.union(tried), nowMillis: now)
                    ?? state.pick(route: route.routeName, targets: route.targets, excluded: unusable, nowMillis: now)
            }
            guard let pick else { break }
            let target = pick.target
            if pick.panic { metrics.breakerPanic() }
            let targetRules = rules(for: target, runtime: runtime)
            if let rejection = await admitWaiting(targetRules) {
                metrics.limitRejected(scope: String(rejection.rule.key.prefix(2)), unit: rejection.unit.rawValue)
                limitRejection = rejection
                unusable.insert(target.keyID)
                continue
            }
            attempts += 1
            guard let provider = runtime.catalog.providers[target.provider], let secret = runtime.secrets[target.keyID]
            else {
                unusable.insert(target.keyID)
                continue
            }
            let upstreamAPI = provider.api(for: request.endpoint.upstream)
            let body: [UInt8]
            do {
                body = try request.upstreamBody(api: upstreamAPI, model: target.model)
            } catch {
                record.status = error.status
                record.outcome = .clientError
                return .response(error.response(api: api), isStream: false)
            }
            record.target = target
            record.targetRules = targetRules
            record.failedAttemptRecorded = false
            tried.insert(target.keyID)
            let call = provider.call(
                request.endpoint.upstream, api: upstreamAPI, secret: secret, body: body, stream: request.stream)
            let sent = ContinuousClock.now
            let outcome: UpstreamOutcome
            var response: UpstreamResponse?
            do {
                let r = try await upstream.send(call)
                response = r
                outcome = (200..<300).contains(r.status) ? .success : .status(r.status)
            } catch {
                if case .cancelled = error {
                    record.status = 499
                    record.outcome = .cancelled
                    return .response(Response(status: .init(code: 499)), isStream: false)
                }
                outcome = error.isTimeout ? .timeout : .connectFailed
                failures.append("\(target.keyID): \(error)")
            }
            let state = routing.withLock {
                $0.record(
                    key: target.keyID, success: !RetryPolicy.isKeyFailure(outcome), nowMillis: wallClock.nowMillis())
            }
            metrics.breakerState(key: target.keyID, state: state)
            if let response, RetryPolicy.decide(outcome) == .done {
                return await deliver(
                    response, request: request, target: target, upstreamAPI: upstreamAPI, callerRules: callerRules,
                    targetRules: targetRules, record: &record, sent: sent)
            }
            record.upstreamTime += ContinuousClock.now - sent
            recordFailedAttempt(target, outcome: outcome, latency: ContinuousClock.now - sent)
            record.failedAttemptRecorded = true
            if let response {
                let detail = await errorDetail(response)
                failures.append("\(target.keyID): HTTP \(response.status)\(detail.isEmpty ? "" : " (\(detail))")")
            }
            switch RetryPolicy.decide(outcome) {
            case .keyBad:
                unusable.insert(target.keyID)
                metrics.retry(reason: "key_rejected")
            case .retry(let wait):
                metrics.retry(
                    reason: outcome == .timeout ? "timeout" : (outcome == .connectFailed ? "connect" : "status"))
                if wait && attempts < maxAttempts {
                    let delay = rng.withLock { backoff.delayMillis(attempt: attempts - 1, using: &$0) }
                    try? await Task.sleep(for: .milliseconds(delay))
                }
            case .done:
                break
            }
            if outcome == .timeout && attempts >= maxAttempts {
                return .exhausted(.upstreamTimeout(after: provider.timeout))
            }
        }
        if let limitRejection, failures.isEmpty {
            return .exhausted(.rateLimited(limitRejection))
        }
        return .exhausted(nil)
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
        recorder.record(
            .usageRecorded(
                UsageRecorded(
                    requestID: "", keyID: target.keyID, model: target.model, limitKeys: [],
                    windowStartMillis: now / 60_000 * 60_000, windowMillis: 60_000, tokensIn: 0, tokensOut: 0,
                    latencyMicros: UInt32(clamping: latency.wholeMicroseconds), status: UInt16(clamping: status),
                    outcome: usageOutcome)))
    }

    /// The first bytes of an upstream error body, for the failure summary (no secrets: providers
    /// do not echo keys, and the body is cut short).
    func errorDetail(_ response: UpstreamResponse) async -> String {
        guard let buffer = try? await response.body.collect(upTo: 64 << 10) else { return "" }
        let bytes = Array(buffer.readableBytesView)
        if let json = try? JSONValue(parsing: bytes), let message = json["error"]?["message"]?.stringValue {
            return String(message.prefix(200))
        }
        return String(decoding: bytes.prefix(200), as: UTF8.self)
    }
}
