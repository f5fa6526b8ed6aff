import EventLog

/// The policy of one client request, as a value the node's I/O shell drives: resolve the model →
/// admit the caller → pick a key → admit the key → send → judge the result → retry, back off,
/// fall back, migrate or answer.
///
/// The shell feeds it events (`start`, what an admission, a pick or an upstream call came to, a
/// timer, the client going away) with the request's elapsed time on the shell's monotonic clock,
/// and performs what each step returns: effects that need no answer (metrics, a key's breaker,
/// a failed attempt's event) and one action whose outcome is the next event. The RNG that jitters
/// backoffs is seeded by the caller, so a table of events and times replays one request exactly.
/// The shape follows `SWIMInstance` and `PeerSync`.
struct RequestMachine {
    /// What the policy reads of the client's request.
    struct Request: Sendable, Equatable {
        var endpoint: ClientEndpoint
        var model: String
        /// The body's `fallbacks`, tried after the model (and before the config's).
        var fallbacks: [String] = []
        /// The request came from a peer (`migrate_to_healthy`): admitted at its origin, served
        /// here without migrating again.
        var migrated = false
    }

    /// The node's state when the request arrives.
    struct Context: Sendable, Equatable {
        var strategy: MigrationStrategy
        var draining = false
        /// The event writer is behind by `gateway.max_pending_events`.
        var overloaded = false
        /// The log cannot take new events (`retention.max_log_bytes` or a full disk).
        var logFull = false
    }

    /// One upstream attempt on one key.
    struct Attempt: Sendable, Equatable {
        var target: ModelTarget
        /// The key's and its provider/model's limit rules, admitted for this attempt.
        var rules: [LimitRule]
        var upstreamAPI: WireAPI
    }

    /// How an upstream call ended without a response head.
    enum CallFailure: Sendable, Equatable {
        case timeout(String)
        case connectFailed(String)
        /// The client went away while the call ran.
        case cancelled
    }

    enum Event: Sendable, Equatable {
        case start
        /// The limiter's answer to an `admit` action: nil when admitted.
        case admission(RateLimitRejection?)
        /// A peer's answer status to a `migrate` action; nil when no peer took the request.
        case migration(status: Int?)
        case picked(RoutingState.Pick?)
        /// The upstream body for the picked key cannot be built from the client's request.
        case bodyRejected(GatewayError)
        case upstreamAnswered(status: Int)
        case upstreamFailed(CallFailure)
        /// The provider's error code a refused attempt's body gave (after `readFailure`); never
        /// its message, which can quote the key.
        case failureRead(String)
        case timerFired
        case clientGone
    }

    enum Action: Sendable, Equatable {
        /// Admit `rules` cluster-wide (waiting briefly for confirmations); answer `admission`.
        case admit([LimitRule])
        /// Forward the request to a healthy peer; answer `migration`.
        case migrate
        /// Pick a key of `route` outside `excluded`, else outside `orElse`; answer `picked`.
        case pick(route: String, targets: [ModelTarget], excluded: Set<String>, orElse: Set<String>)
        /// Build the upstream body and call the key; answer `upstreamAnswered`, `upstreamFailed`
        /// or `bodyRejected`.
        case send(Attempt)
        /// Read the detail of the refused attempt's body and drop the rest; answer `failureRead`.
        case readFailure
        /// Answer `timerFired` after this long (or `clientGone`).
        case wait(Duration)
        /// Final: the attempt's upstream answer goes to the client.
        case deliver(Attempt)
        /// Final: the peer's answer goes to the client.
        case relayMigration
        /// Final: the request ends with this error.
        case respond(GatewayError)
        /// Final: the client went away; nothing is sent.
        case abandon
    }

    enum Effect: Sendable, Equatable {
        case overloaded
        case logFull
        case limitRejected(scope: String, unit: RateLimitRejection.Unit)
        case fallback(from: String, to: String)
        case breakerPanic
        /// The key's breaker counts the attempt as a success or a failure.
        case judged(key: String, success: Bool)
        /// A failed attempt's `usage.recorded`: it counts against its key even when another key
        /// then serves the request.
        case attemptFailed(ModelTarget, UpstreamOutcome, latency: Duration)
        case retry(reason: String)
        /// Every key of every model tried failed: the operator's log gets which and why (the
        /// client's error names only providers and kinds of failure).
        case everyKeyFailed(model: String, detail: String)
    }

    struct Step: Sendable, Equatable {
        var effects: [Effect] = []
        var action: Action
    }

    /// What the request did, for its `usage.recorded` event; the shell adds what delivery shows.
    private(set) var record = RequestRecord()
    /// The request was answered by a peer.
    private(set) var migrated = false

    private let request: Request
    private let context: Context
    private let runtime: RuntimeConfig
    private let caller: VirtualKeyTable.Entry?
    private let callerRules: [LimitRule]
    private var rng: SplitMix64

    private enum Phase: Equatable {
        case idle
        case migratingOnDrain
        case admittingCaller
        case picking
        case admittingTarget(ModelTarget, [LimitRule])
        case sending(Attempt, sentAt: Duration)
        case readingFailure(Attempt, status: Int)
        case backingOff(after: UpstreamOutcome, timeout: Duration)
        case betweenRounds
        case migratingAfterFailure(GatewayError)
        case finished
    }

    /// The key search in one model of the chain.
    private struct Route {
        var resolution: Catalog.Resolution
        var maxAttempts: Int
        /// Keys that cannot serve this request: unusable, of the wrong API, refused or limited.
        var unusable: Set<String>
        var tried: Set<String> = []
        var attempts = 0
        var limitRejection: RateLimitRejection?
    }

    private var phase = Phase.idle
    private var effects: [Effect] = []
    private var chain: [String] = []
    private var first: Catalog.Resolution?
    private var round = 0
    private var chainIndex = 0
    private var route: Route?
    /// Each failed attempt: what the client may see (the provider entry and the kind of
    /// failure) and what the operator's log gets (the key and the provider's error code).
    private var failures: [(shown: String, logged: String)] = []
    private var lastError: GatewayError?
    private var deadline = Duration.zero

    init(
        request: Request, context: Context, runtime: RuntimeConfig, caller: VirtualKeyTable.Entry?,
        callerRules: [LimitRule], seed: UInt64
    ) {
        self.request = request
        self.context = context
        self.runtime = runtime
        self.caller = caller
        self.callerRules = callerRules
        record.virtualKey = caller?.name
        rng = SplitMix64(seed: seed)
    }

    /// One migration hop at most: a migrated request is served where it lands.
    private var mayMigrate: Bool { context.strategy == .migrateToHealthy && !request.migrated }

    /// `retry_with_backoff` runs the whole chain again after a backoff, within the deadline.
    private var rounds: Int { context.strategy == .retryWithBackoff ? 3 : 1 }

    private var settings: BifrostConfig.GatewaySettings { runtime.config.gateway }

    mutating func handle(_ event: Event, now: Duration) -> Step {
        effects = []
        let action = next(event, now: now)
        if action.isFinal { phase = .finished }
        return Step(effects: effects, action: action)
    }

    private mutating func next(_ event: Event, now: Duration) -> Action {
        switch (phase, event) {
        case (.finished, _):
            return .abandon
        case (_, .clientGone), (.sending, .upstreamFailed(.cancelled)):
            record.status = 499
            record.outcome = .cancelled
            return .abandon
        case (.idle, .start):
            if context.logFull {
                effects.append(.logFull)
                return fail(.logFull())
            }
            if context.overloaded {
                effects.append(.overloaded)
                return fail(.overloaded())
            }
            if mayMigrate && context.draining {
                phase = .migratingOnDrain
                return .migrate
            }
            return resolve(now: now)
        case (.migratingOnDrain, .migration(let status)):
            if let status { return relayMigration(status: status) }
            return resolve(now: now)
        case (.admittingCaller, .admission(let rejection)):
            if let rejection {
                effects.append(.limitRejected(scope: "vk", unit: rejection.unit))
                record.status = 429
                record.outcome = .rateLimited
                return .respond(.rateLimited(rejection))
            }
            return enterRoute(at: 0, now: now)
        case (.picking, .picked(let pick)):
            guard let pick else { return routeExhausted(nil, now: now) }
            if pick.panic { effects.append(.breakerPanic) }
            let rules = GatewayEngine.rules(for: pick.target, runtime: runtime)
            if rules.isEmpty { return admitted(pick.target, rules, now: now) }
            phase = .admittingTarget(pick.target, rules)
            return .admit(rules)
        case (.admittingTarget(let target, let rules), .admission(let rejection)):
            guard let rejection else { return admitted(target, rules, now: now) }
            effects.append(.limitRejected(scope: String(rejection.rule.key.prefix(2)), unit: rejection.unit))
            route?.limitRejection = rejection
            route?.unusable.insert(target.keyID)
            return pickNext(now: now)
        case (.sending, .bodyRejected(let error)):
            record.status = error.status
            record.outcome = .clientError
            return .respond(error)
        case (.sending(let attempt, let sentAt), .upstreamAnswered(let status)):
            let outcome: UpstreamOutcome = (200..<300).contains(status) ? .success : .status(status)
            effects.append(.judged(key: attempt.target.keyID, success: !RetryPolicy.isKeyFailure(outcome)))
            if RetryPolicy.decide(outcome) == .done { return .deliver(attempt) }
            attemptFailed(attempt, outcome, latency: now - sentAt)
            phase = .readingFailure(attempt, status: status)
            return .readFailure
        case (.sending(let attempt, let sentAt), .upstreamFailed(let failure)):
            let outcome: UpstreamOutcome
            switch failure {
            case .timeout(let detail):
                outcome = .timeout
                failures.append(("\(attempt.target.provider): timeout", "\(attempt.target.keyID): \(detail)"))
            case .connectFailed(let detail):
                outcome = .connectFailed
                failures.append(
                    ("\(attempt.target.provider): connection failed", "\(attempt.target.keyID): \(detail)"))
            case .cancelled:
                return .abandon
            }
            effects.append(.judged(key: attempt.target.keyID, success: false))
            attemptFailed(attempt, outcome, latency: now - sentAt)
            return judgeFailure(attempt, outcome, now: now)
        case (.readingFailure(let attempt, let status), .failureRead(let detail)):
            let code = detail.isEmpty ? "" : " (\(detail))"
            failures.append(
                ("\(attempt.target.provider): HTTP \(status)\(code)", "\(attempt.target.keyID): HTTP \(status)\(code)"))
            return judgeFailure(attempt, .status(status), now: now)
        case (.backingOff(let outcome, let timeout), .timerFired):
            return afterAttempt(outcome, timeout: timeout, now: now)
        case (.betweenRounds, .timerFired):
            return enterRoute(at: 0, now: now)
        case (.migratingAfterFailure(let error), .migration(let status)):
            if let status {
                record.target = nil
                return relayMigration(status: status)
            }
            return fail(error)
        default:
            assertionFailure("request machine: \(event) in \(phase)")
            record.status = 500
            record.outcome = .upstreamError
            return .respond(.internalError("The gateway lost track of this request; retry it."))
        }
    }

    // MARK: Steps

    /// The chain of models to try: the requested one, then the body's and the config's fallbacks.
    private mutating func resolve(now: Duration) -> Action {
        chain = [request.model]
        for m in request.fallbacks + (settings.fallbacks[request.model] ?? []) where !chain.contains(m) {
            chain.append(m)
        }
        guard let first = runtime.catalog.resolve(request.model) else {
            record.status = 404
            record.outcome = .clientError
            return .respond(.unknownModel(request.model))
        }
        guard allowed(request.model, first.targets) else {
            record.status = 403
            record.outcome = .clientError
            return .respond(.modelNotAllowed(request.model))
        }
        self.first = first
        deadline = now + (runtime.catalog.providers[first.targets[0].provider]?.timeout ?? .seconds(60))
        if !request.migrated && !callerRules.isEmpty {
            phase = .admittingCaller
            return .admit(callerRules)
        }
        return enterRoute(at: 0, now: now)
    }

    /// Starts the key search in the first servable model of the chain from `index`.
    private mutating func enterRoute(at index: Int, now: Duration) -> Action {
        var index = index
        while index < chain.count {
            let name = chain[index]
            guard let resolution = index == 0 ? first : runtime.catalog.resolve(name),
                allowed(name, resolution.targets)
            else {
                index += 1
                continue
            }
            if index > 0 { effects.append(.fallback(from: chain[chainIndex], to: name)) }
            chainIndex = index
            var unusable = Set(runtime.unusableKeys.keys)
            // Embeddings only exist on OpenAI-API providers.
            if request.endpoint == .embeddings {
                for t in resolution.targets
                where runtime.catalog.providers[t.provider]?.api(for: .embeddings) != .openAI {
                    unusable.insert(t.keyID)
                }
            }
            route = Route(
                resolution: resolution,
                maxAttempts: context.strategy == .circuitBreaker ? 1 : settings.maxAttempts, unusable: unusable)
            return pickNext(now: now)
        }
        return endRound(now: now)
    }

    /// Untried keys first; a key is tried again only when every usable one was tried.
    private mutating func pickNext(now: Duration) -> Action {
        guard let route, route.attempts < route.maxAttempts else { return routeExhausted(nil, now: now) }
        phase = .picking
        return .pick(
            route: route.resolution.routeName, targets: route.resolution.targets,
            excluded: route.unusable.union(route.tried), orElse: route.unusable)
    }

    private mutating func admitted(_ target: ModelTarget, _ rules: [LimitRule], now: Duration) -> Action {
        route?.attempts += 1
        guard let provider = runtime.catalog.providers[target.provider], runtime.secrets[target.keyID] != nil else {
            route?.unusable.insert(target.keyID)
            return pickNext(now: now)
        }
        let attempt = Attempt(target: target, rules: rules, upstreamAPI: provider.api(for: request.endpoint.upstream))
        record.target = target
        record.targetRules = rules
        record.failedAttemptRecorded = false
        route?.tried.insert(target.keyID)
        phase = .sending(attempt, sentAt: now)
        return .send(attempt)
    }

    private mutating func attemptFailed(_ attempt: Attempt, _ outcome: UpstreamOutcome, latency: Duration) {
        record.upstreamTime += latency
        record.failedAttemptRecorded = true
        effects.append(.attemptFailed(attempt.target, outcome, latency: latency))
    }

    /// 401/403: the key is bad for this request, next key at once. 429, 5xx, timeouts and
    /// connection failures: another try after a backoff while attempts remain.
    private mutating func judgeFailure(_ attempt: Attempt, _ outcome: UpstreamOutcome, now: Duration) -> Action {
        let timeout = runtime.catalog.providers[attempt.target.provider]?.timeout ?? .seconds(60)
        switch RetryPolicy.decide(outcome) {
        case .keyBad:
            route?.unusable.insert(attempt.target.keyID)
            effects.append(.retry(reason: "key_rejected"))
        case .retry(let wait):
            effects.append(
                .retry(reason: outcome == .timeout ? "timeout" : (outcome == .connectFailed ? "connect" : "status")))
            if wait, let route, route.attempts < route.maxAttempts {
                let backoff = Backoff(
                    baseMillis: settings.backoffBase.wholeMilliseconds, capMillis: settings.backoffMax.wholeMilliseconds
                )
                let delay = backoff.delayMillis(attempt: route.attempts - 1, using: &rng)
                phase = .backingOff(after: outcome, timeout: timeout)
                return .wait(.milliseconds(delay))
            }
        case .done:
            break
        }
        return afterAttempt(outcome, timeout: timeout, now: now)
    }

    private mutating func afterAttempt(_ outcome: UpstreamOutcome, timeout: Duration, now: Duration) -> Action {
        if outcome == .timeout, let route, route.attempts >= route.maxAttempts {
            return routeExhausted(.upstreamTimeout(after: timeout), now: now)
        }
        return pickNext(now: now)
    }

    /// Every key of the current model failed or was refused: on to the next model of the chain.
    private mutating func routeExhausted(_ error: GatewayError?, now: Duration) -> Action {
        if let rejection = route?.limitRejection, failures.isEmpty {
            lastError = .rateLimited(rejection)
        } else {
            lastError = error
        }
        route = nil
        return enterRoute(at: chainIndex + 1, now: now)
    }

    /// The chain is done: another round after a backoff (`retry_with_backoff`, unless limits
    /// refused it or the deadline would pass), else the final answer.
    private mutating func endRound(now: Duration) -> Action {
        round += 1
        if round < rounds && lastError?.status != 429 {
            let backoff = Backoff(
                baseMillis: settings.backoffBase.wholeMilliseconds * 4, capMillis: settings.backoffMax.wholeMilliseconds
            )
            let delay = Duration.milliseconds(backoff.delayMillis(attempt: round, using: &rng))
            if now + delay < deadline {
                effects.append(.retry(reason: "round"))
                phase = .betweenRounds
                return .wait(delay)
            }
        }
        if lastError == nil && !failures.isEmpty {
            effects.append(
                .everyKeyFailed(model: request.model, detail: failures.map(\.logged).joined(separator: "; ")))
        }
        let error =
            lastError
            ?? (failures.isEmpty
                ? .noHealthyKey(model: request.model)
                : .allKeysFailed(model: request.model, summary: Self.summary(failures.map(\.shown))))
        if mayMigrate && error.status >= 500 {
            phase = .migratingAfterFailure(error)
            return .migrate
        }
        return fail(error)
    }

    private mutating func relayMigration(status: Int) -> Action {
        migrated = true
        record.status = status
        return .relayMigration
    }

    private mutating func fail(_ error: GatewayError) -> Action {
        record.status = error.status
        record.outcome =
            switch error.status {
            case 429: .rateLimited
            case 504: .timeout
            default: .upstreamError
            }
        return .respond(error)
    }

    /// The failures in order, a run of equal ones counted once (`openai: HTTP 500 ×3`).
    static func summary(_ failures: [String]) -> String {
        var runs: [(String, Int)] = []
        for failure in failures {
            if runs.last?.0 == failure {
                runs[runs.count - 1].1 += 1
            } else {
                runs.append((failure, 1))
            }
        }
        return runs.map { $0.1 > 1 ? "\($0.0) ×\($0.1)" : $0.0 }.joined(separator: "; ")
    }

    private func allowed(_ requested: String, _ targets: [ModelTarget]) -> Bool {
        guard let caller else { return true }
        return targets.contains { t in caller.models.contains { $0.allows(requested: requested, target: t) } }
    }
}

extension RequestMachine.Action {
    var isFinal: Bool {
        switch self {
        case .deliver, .relayMigration, .respond, .abandon: true
        case .admit, .migrate, .pick, .send, .readFailure, .wait: false
        }
    }
}
