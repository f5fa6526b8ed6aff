import EventLog
import Testing

@testable import Gateway

/// The request policy, driven without sockets: a scripted world answers each action of the
/// machine (keys answer with a status or fail, limits refuse, peers take or refuse a migration)
/// on a clock that moves only when the machine sends or waits.
@Suite struct RequestMachineTests {
    /// What a key answers each time it is called; its last answer repeats.
    enum Answer: Equatable {
        case status(Int)
        case timeout
        case connectFailed
    }

    struct World {
        var answers: [String: [Answer]] = [:]
        /// Limit keys (`vk:team`, `pk:k1`) whose admission refuses.
        var limited: Set<String> = []
        /// The status a peer answers a migration with; nil when no peer takes it.
        var peer: Int?
        var sendTime = Duration.milliseconds(5)
        var calls: [String: Int] = [:]

        mutating func answer(_ key: String) -> Answer {
            let list = answers[key] ?? [.status(200)]
            let n = calls[key, default: 0]
            calls[key] = n + 1
            return list[min(n, list.count - 1)]
        }
    }

    /// One request run to its final action.
    struct Trace {
        var actions: [RequestMachine.Action] = []
        var effects: [RequestMachine.Effect] = []
        var elapsed = Duration.zero
        var machine: RequestMachine

        var final: RequestMachine.Action { actions.last! }
        /// The keys called, in order.
        var sends: [String] {
            actions.compactMap { if case .send(let a) = $0 { a.target.keyID } else { nil } }
        }
        var waits: [Duration] { actions.compactMap { if case .wait(let d) = $0 { d } else { nil } } }
        var error: GatewayError? { if case .respond(let e) = final { e } else { nil } }
        var retries: [String] { effects.compactMap { if case .retry(let r) = $0 { r } else { nil } } }
    }

    static func config(
        providers: String, virtualKeys: String = "", gateway: String = "{}"
    ) throws -> RuntimeConfig {
        let vk = virtualKeys.isEmpty ? "" : #", "virtual_keys": [\#(virtualKeys)]"#
        let document = #"{"providers": {\#(providers)}, "gateway": \#(gateway)\#(vk)}"#
        return try RuntimeConfig(BifrostConfig.parse(Array(document.utf8)), environment: [:])
    }

    /// `keys` serve `gpt-4o-mini` at one OpenAI provider whose calls time out after 1 s.
    static func openAI(_ keys: [String], models: String = #"["gpt-4o-mini"]"#, limits: [String: Int] = [:]) -> String {
        let entries = keys.map { key in
            let limit = limits[key].map { #", "limits": {"rpm": \#($0)}"# } ?? ""
            return #"{"name": "\#(key)", "value": "sk-\#(key)", "models": \#(models)\#(limit)}"#
        }
        return
            #""openai": {"type": "openai", "network": {"timeout": "1s"}, "keys": [\#(entries.joined(separator: ", "))]}"#
    }

    static func run(
        _ model: String = "gpt-4o-mini", runtime: RuntimeConfig, world: World = World(),
        strategy: MigrationStrategy = .completeOnOrigin, endpoint: ClientEndpoint = .chatCompletions,
        fallbacks: [String] = [], migrated: Bool = false, draining: Bool = false, overloaded: Bool = false,
        logFull: Bool = false, token: Substring? = nil, goneAfter: Int? = nil
    ) -> Trace {
        var world = world
        let caller = token.flatMap { runtime.virtualKeys.lookup(token: $0) }
        var machine = RequestMachine(
            request: .init(endpoint: endpoint, model: model, fallbacks: fallbacks, migrated: migrated),
            context: .init(strategy: strategy, draining: draining, overloaded: overloaded, logFull: logFull),
            runtime: runtime,
            caller: caller, callerRules: caller.map(GatewayEngine.rules(for:)) ?? [], seed: 7)
        var trace = Trace(machine: machine)
        var event = RequestMachine.Event.start
        var now = Duration.zero
        for n in 0..<200 {
            let step = machine.handle(goneAfter == n ? .clientGone : event, now: now)
            trace.actions.append(step.action)
            trace.effects += step.effects
            switch step.action {
            case .admit(let rules):
                let refused = rules.first { world.limited.contains($0.key) }
                event = .admission(
                    refused.map {
                        RateLimitRejection(
                            rule: $0, unit: .requests, status: LimitStatus(limit: 1, remaining: 0, resetMillis: 1_000))
                    })
            case .migrate:
                event = .migration(status: world.peer)
            case .pick(_, let targets, let excluded, let orElse):
                let pick =
                    targets.first { !excluded.contains($0.keyID) } ?? targets.first { !orElse.contains($0.keyID) }
                event = .picked(pick.map { RoutingState.Pick(target: $0, panic: false) })
            case .send(let attempt):
                now += world.sendTime
                event =
                    switch world.answer(attempt.target.keyID) {
                    case .status(let s): .upstreamAnswered(status: s)
                    case .timeout: .upstreamFailed(.timeout("the provider did not answer in time"))
                    case .connectFailed: .upstreamFailed(.connectFailed("connection refused"))
                    }
            case .readFailure:
                event = .failureRead("upstream said no")
            case .wait(let delay):
                now += delay
                event = .timerFired
            case .deliver, .relayMigration, .respond, .abandon:
                trace.elapsed = now
                trace.machine = machine
                return trace
            }
        }
        Issue.record("the machine did not finish in 200 steps")
        return trace
    }

    // MARK: Keys

    @Test func success_deliversTheFirstKeysAnswer_andCountsItForItsBreaker() throws {
        let trace = Self.run(runtime: try Self.config(providers: Self.openAI(["k1", "k2"])))
        #expect(trace.sends == ["k1"])
        guard case .deliver(let attempt) = trace.final else { Issue.record("\(trace.final)"); return }
        #expect(attempt.target.keyID == "k1")
        #expect(attempt.upstreamAPI == .openAI)
        #expect(trace.effects == [.judged(key: "k1", success: true)])
        #expect(trace.machine.record.target?.keyID == "k1")
    }

    @Test func status429_movesToAnotherKeyAfterABackoff() throws {
        var world = World()
        world.answers["k1"] = [.status(429)]
        let trace = Self.run(runtime: try Self.config(providers: Self.openAI(["k1", "k2"])), world: world)
        #expect(trace.sends == ["k1", "k2"])
        #expect(trace.waits.count == 1)
        // Attempt 0's backoff: full jitter in [0, backoff_base].
        #expect(trace.waits[0] <= .milliseconds(50))
        #expect(trace.retries == ["status"])
        #expect(
            trace.effects.contains {
                if case .attemptFailed(let t, .status(429), _) = $0 { t.keyID == "k1" } else { false }
            })
        #expect(trace.effects.contains(.judged(key: "k1", success: false)))
        if case .deliver(let a) = trace.final {
            #expect(a.target.keyID == "k2")
        } else {
            Issue.record("\(trace.final)")
        }
    }

    @Test func status5xx_retriesTheOnlyKeyWithBackoff() throws {
        var world = World()
        world.answers["k1"] = [.status(503), .status(500), .status(200)]
        let trace = Self.run(runtime: try Self.config(providers: Self.openAI(["k1"])), world: world)
        #expect(trace.sends == ["k1", "k1", "k1"])
        #expect(trace.waits.count == 2)
        // Attempt 1's backoff doubles the ceiling.
        #expect(trace.waits[1] <= .milliseconds(100))
        guard case .deliver = trace.final else { Issue.record("\(trace.final)"); return }
        #expect(trace.machine.record.failedAttemptRecorded == false)
        #expect(trace.machine.record.upstreamTime == .milliseconds(10))
    }

    @Test func status401or403_marksTheKeyBadForTheRequest_withoutBackoff() throws {
        for refusal in [401, 403] {
            var world = World()
            world.answers["k1"] = [.status(refusal)]
            world.answers["k2"] = [.status(500), .status(200)]
            let trace = Self.run(runtime: try Self.config(providers: Self.openAI(["k1", "k2"])), world: world)
            // k2 is tried again before k1, which refused the key, is ever tried twice.
            #expect(trace.sends == ["k1", "k2", "k2"])
            #expect(trace.retries == ["key_rejected", "status"])
            #expect(trace.waits.count == 1)
            guard case .deliver(let a) = trace.final else { Issue.record("\(trace.final)"); return }
            #expect(a.target.keyID == "k2")
        }
    }

    @Test func otherClientErrors_goBackAsTheyAre() throws {
        var world = World()
        world.answers["k1"] = [.status(400)]
        let trace = Self.run(runtime: try Self.config(providers: Self.openAI(["k1", "k2"])), world: world)
        #expect(trace.sends == ["k1"])
        guard case .deliver = trace.final else { Issue.record("\(trace.final)"); return }
        #expect(trace.effects == [.judged(key: "k1", success: true)])
    }

    @Test func allKeysFailed_answers502NamingEachFailure_andLogsTheKeys() throws {
        var world = World()
        world.answers["k1"] = [.status(500)]
        world.answers["k2"] = [.connectFailed]
        let trace = Self.run(runtime: try Self.config(providers: Self.openAI(["k1", "k2"])), world: world)
        #expect(trace.sends == ["k1", "k2", "k1"])
        let error = try #require(trace.error)
        #expect(error.status == 502)
        #expect(error.code == "all_keys_failed")
        #expect(
            error.message.hasSuffix(
                "openai: HTTP 500 (upstream said no); openai: connection failed; openai: HTTP 500 (upstream said no)"))
        // The client learns the provider and the kind of failure, never the operator's key ids;
        // the log gets those.
        #expect(!error.message.contains("k1") && !error.message.contains("k2"))
        let logged = trace.effects.compactMap { if case .everyKeyFailed(_, let d) = $0 { d } else { nil } }
        #expect(logged == ["k1: HTTP 500 (upstream said no); k2: connection refused; k1: HTTP 500 (upstream said no)"])
        #expect(trace.machine.record.status == 502)
        #expect(trace.machine.record.outcome == .upstreamError)
        // The last attempt's failure is recorded with that attempt, not again as the request's.
        #expect(trace.machine.record.failedAttemptRecorded)
    }

    @Test func summary_countsARunOfEqualFailuresOnce() {
        #expect(RequestMachine.summary(["a: HTTP 500", "a: HTTP 500", "a: HTTP 500"]) == "a: HTTP 500 ×3")
        #expect(
            RequestMachine.summary(["a: timeout", "b: HTTP 429", "a: timeout"]) == "a: timeout; b: HTTP 429; a: timeout"
        )
    }

    @Test func deadline_lastAttemptTimingOut_answers504() throws {
        var world = World()
        world.answers["k1"] = [.timeout]
        world.sendTime = .seconds(1)
        let trace = Self.run(runtime: try Self.config(providers: Self.openAI(["k1"])), world: world)
        #expect(trace.sends.count == 3)
        #expect(trace.error == .upstreamTimeout(after: .seconds(1)))
        #expect(trace.machine.record.outcome == .timeout)
        #expect(trace.retries == ["timeout", "timeout", "timeout"])
    }

    @Test func noUsableKey_answers503() throws {
        // A key whose secret is an unset environment variable is never routed to.
        let providers =
            #""openai": {"type": "openai", "keys": [{"name": "k1", "value": "env.UNSET_KEY", "models": ["gpt-4o-mini"]}]}"#
        let trace = Self.run(runtime: try Self.config(providers: providers))
        #expect(trace.sends.isEmpty)
        #expect(trace.error?.code == "no_healthy_key")
    }

    @Test func embeddings_skipKeysOfAnthropicProviders() throws {
        let providers = #"""
            "anthropic": {"type": "anthropic", "keys": [{"name": "a1", "value": "sk-a", "models": ["shared"]}]},
            "openai": {"type": "openai", "keys": [{"name": "o1", "value": "sk-o", "models": ["shared"]}]}
            """#
        let trace = Self.run("shared", runtime: try Self.config(providers: providers), endpoint: .embeddings)
        #expect(trace.sends == ["o1"])
    }

    // MARK: Resolution and limits

    @Test func unknownModel_answers404_andAModelTheKeyMayNotUse_403() throws {
        let runtime = try Self.config(
            providers: Self.openAI(["k1"]),
            virtualKeys: #"{"name": "team", "value": "tok-team", "models": ["gpt-4o"]}"#)
        #expect(Self.run("nope", runtime: runtime).error?.status == 404)
        let trace = Self.run(runtime: runtime, token: "tok-team")
        #expect(trace.error?.status == 403)
        #expect(trace.machine.record.outcome == .clientError)
    }

    @Test func callerOverItsLimit_answers429_beforeAnyKeyIsPicked() throws {
        let runtime = try Self.config(
            providers: Self.openAI(["k1"]),
            virtualKeys: #"{"name": "team", "value": "tok-team", "limits": {"rpm": 10}}"#)
        var world = World()
        world.limited = ["vk:team"]
        let trace = Self.run(runtime: runtime, world: world, token: "tok-team")
        #expect(trace.actions.count == 2)
        #expect(trace.error?.status == 429)
        #expect(trace.effects == [.limitRejected(scope: "vk", unit: .requests)])
        // A migrated request was admitted at its origin.
        let migrated = Self.run(runtime: runtime, world: world, migrated: true, token: "tok-team")
        #expect(migrated.sends == ["k1"])
    }

    @Test func keyOverItsLimit_movesToAnotherKey_andAllLimited_answers429() throws {
        let runtime = try Self.config(providers: Self.openAI(["k1", "k2"], limits: ["k1": 5, "k2": 5]))
        var world = World()
        world.limited = ["pk:k1"]
        let one = Self.run(runtime: runtime, world: world)
        #expect(one.sends == ["k2"])
        #expect(one.effects.first == .limitRejected(scope: "pk", unit: .requests))
        world.limited = ["pk:k1", "pk:k2"]
        let both = Self.run(runtime: runtime, world: world)
        #expect(both.sends.isEmpty)
        #expect(both.error?.status == 429)
        #expect(both.error?.message.contains("provider key 'k") == true)
    }

    @Test func overloaded_answers503_withoutTouchingKeysOrLimits() throws {
        let trace = Self.run(runtime: try Self.config(providers: Self.openAI(["k1"])), overloaded: true)
        #expect(trace.actions.count == 1)
        #expect(trace.error?.code == GatewayError.overloaded().code)
        #expect(trace.effects == [.overloaded])
    }

    @Test func fullLog_answers503LogFull_beforeAdmittingAnything() throws {
        let trace = Self.run(
            runtime: try Self.config(providers: Self.openAI(["k1"])), strategy: .migrateToHealthy, draining: true,
            logFull: true)
        #expect(trace.actions.count == 1)
        #expect(trace.error?.code == "log_full")
        #expect(trace.error?.status == 503)
        #expect(trace.effects == [.logFull])
    }

    // MARK: Fallbacks

    @Test func fallbacks_fromTheBodyThenTheConfig_areTriedInOrder() throws {
        let providers = #"""
            "openai": {"type": "openai", "keys": [
              {"name": "a", "value": "sk-a", "models": ["model-a"]},
              {"name": "b", "value": "sk-b", "models": ["model-b"]},
              {"name": "c", "value": "sk-c", "models": ["model-c"]}]}
            """#
        let runtime = try Self.config(
            providers: providers,
            gateway: #"{"fallbacks": {"model-a": ["model-c", "model-b"]}, "retry": {"max_attempts": 1}}"#)
        var world = World()
        world.answers = ["a": [.status(500)], "b": [.status(500)]]
        let trace = Self.run("model-a", runtime: runtime, world: world, fallbacks: ["model-b", "unknown"])
        // The body's chain comes first; the config's adds what it lacks; unknown names are skipped.
        #expect(trace.sends == ["a", "b", "c"])
        let fallbacks = trace.effects.compactMap { if case .fallback(let f, let t) = $0 { "\(f)→\(t)" } else { nil } }
        #expect(fallbacks == ["model-a→model-b", "model-b→model-c"])
        if case .deliver(let a) = trace.final { #expect(a.target.keyID == "c") } else { Issue.record("\(trace.final)") }
    }

    @Test func fallbacks_skipModelsTheCallerMayNotUse() throws {
        let providers = #"""
            "openai": {"type": "openai", "keys": [
              {"name": "a", "value": "sk-a", "models": ["model-a"]},
              {"name": "b", "value": "sk-b", "models": ["model-b"]}]}
            """#
        let runtime = try Self.config(
            providers: providers, virtualKeys: #"{"name": "team", "value": "tok-team", "models": ["model-a"]}"#)
        var world = World()
        world.answers = ["a": [.status(500)]]
        let trace = Self.run("model-a", runtime: runtime, world: world, fallbacks: ["model-b"], token: "tok-team")
        #expect(!trace.sends.contains("b"))
        #expect(trace.error?.status == 502)
    }

    // MARK: Migration strategies

    @Test func completeOnOrigin_servesLocallyWhileDraining_andNeverMigrates() throws {
        var world = World()
        world.peer = 200
        world.answers["k1"] = [.status(500)]
        let trace = Self.run(
            runtime: try Self.config(providers: Self.openAI(["k1"])), world: world, strategy: .completeOnOrigin,
            draining: true)
        #expect(!trace.actions.contains(.migrate))
        #expect(trace.sends.count == 3)
        #expect(trace.error?.status == 502)
    }

    @Test func migrateToHealthy_whileDraining_movesTheRequestFirst() throws {
        var world = World()
        world.peer = 200
        let trace = Self.run(
            runtime: try Self.config(providers: Self.openAI(["k1"])), world: world, strategy: .migrateToHealthy,
            draining: true)
        #expect(trace.actions == [.migrate, .relayMigration])
        #expect(trace.machine.migrated)
        #expect(trace.machine.record.status == 200)
        #expect(trace.machine.record.target == nil)
    }

    @Test func migrateToHealthy_withNoPeer_servesLocally() throws {
        let trace = Self.run(
            runtime: try Self.config(providers: Self.openAI(["k1"])), strategy: .migrateToHealthy, draining: true)
        #expect(trace.actions.first == .migrate)
        #expect(trace.sends == ["k1"])
        #expect(!trace.machine.migrated)
    }

    @Test func migrateToHealthy_afterEveryKeyFailed_movesTheRequestToAPeer() throws {
        var world = World()
        world.peer = 200
        world.answers["k1"] = [.status(500)]
        let trace = Self.run(
            runtime: try Self.config(providers: Self.openAI(["k1"])), world: world, strategy: .migrateToHealthy)
        #expect(trace.sends.count == 3)
        #expect(Array(trace.actions.suffix(2)) == [.migrate, .relayMigration])
        #expect(trace.machine.record.target == nil)
        // No peer takes it: the local failure is the answer.
        world.peer = nil
        let alone = Self.run(
            runtime: try Self.config(providers: Self.openAI(["k1"])), world: world, strategy: .migrateToHealthy)
        #expect(alone.error?.status == 502)
        #expect(alone.machine.record.target?.keyID == "k1")
    }

    @Test func migrateToHealthy_aMigratedRequestNeverMovesAgain() throws {
        var world = World()
        world.peer = 200
        world.answers["k1"] = [.status(500)]
        let trace = Self.run(
            runtime: try Self.config(providers: Self.openAI(["k1"])), world: world, strategy: .migrateToHealthy,
            migrated: true, draining: true)
        #expect(!trace.actions.contains(.migrate))
        #expect(trace.error?.status == 502)
    }

    @Test func migrateToHealthy_aClientErrorIsNotMigrated() throws {
        let runtime = try Self.config(
            providers: Self.openAI(["k1"], limits: ["k1": 1]))
        var world = World()
        world.peer = 200
        world.limited = ["pk:k1"]
        let trace = Self.run(runtime: runtime, world: world, strategy: .migrateToHealthy)
        #expect(!trace.actions.contains(.migrate))
        #expect(trace.error?.status == 429)
    }

    @Test func retryWithBackoff_runsTheChainThreeTimes_withLongerBackoffsBetweenRounds() throws {
        var world = World()
        world.answers["k1"] = [.status(500)]
        let runtime = try Self.config(
            providers: Self.openAI(["k1"]), gateway: #"{"retry": {"max_attempts": 2, "backoff_base": "10ms"}}"#)
        let trace = Self.run(runtime: runtime, world: world, strategy: .retryWithBackoff)
        #expect(trace.sends.count == 6)
        #expect(trace.retries.filter { $0 == "round" }.count == 2)
        #expect(trace.error?.status == 502)
    }

    @Test func retryWithBackoff_stopsWhenTheNextRoundWouldPassTheDeadline() throws {
        var world = World()
        world.answers["k1"] = [.status(500)]
        // Each call takes most of the provider's 1 s timeout: no round fits after the first.
        world.sendTime = .milliseconds(990)
        let runtime = try Self.config(
            providers: Self.openAI(["k1"]),
            gateway: #"{"retry": {"max_attempts": 1, "backoff_base": "1s", "backoff_max": "2s"}}"#)
        let trace = Self.run(runtime: runtime, world: world, strategy: .retryWithBackoff)
        #expect(trace.sends.count <= 2)
        #expect(trace.error?.status == 502)
    }

    @Test func retryWithBackoff_aLimitRefusalEndsTheRounds() throws {
        var world = World()
        world.limited = ["pk:k1"]
        let runtime = try Self.config(providers: Self.openAI(["k1"], limits: ["k1": 1]))
        let trace = Self.run(runtime: runtime, world: world, strategy: .retryWithBackoff)
        #expect(trace.waits.isEmpty)
        #expect(trace.error?.status == 429)
    }

    @Test func circuitBreaker_triesOneKeyPerModel() throws {
        var world = World()
        world.answers["k1"] = [.status(500)]
        let trace = Self.run(
            runtime: try Self.config(providers: Self.openAI(["k1", "k2"])), world: world, strategy: .circuitBreaker)
        #expect(trace.sends == ["k1"])
        #expect(trace.error?.status == 502)
    }

    // MARK: The client

    @Test func clientGone_duringABackoff_abandonsTheRequest() throws {
        var world = World()
        world.answers["k1"] = [.status(500)]
        // Steps: pick, send, readFailure, wait — then the client goes.
        let trace = Self.run(runtime: try Self.config(providers: Self.openAI(["k1"])), world: world, goneAfter: 4)
        #expect(trace.final == .abandon)
        #expect(trace.sends == ["k1"])
        #expect(trace.machine.record.status == 499)
        #expect(trace.machine.record.outcome == .cancelled)
    }

    /// A machine for one `gpt-4o-mini` request to the single key `k1`, started: it asks to pick.
    static func started(strategy: MigrationStrategy) throws -> (RequestMachine, ModelTarget) {
        var machine = RequestMachine(
            request: .init(endpoint: .chatCompletions, model: "gpt-4o-mini"), context: .init(strategy: strategy),
            runtime: try config(providers: openAI(["k1"])), caller: nil, callerRules: [], seed: 1)
        let step = machine.handle(.start, now: .zero)
        guard case .pick(_, let targets, _, _) = step.action, let target = targets.first else {
            throw GatewayError.internalError("expected a pick, got \(step.action)")
        }
        return (machine, target)
    }

    @Test func clientGone_duringTheCall_abandonsTheRequest() throws {
        var (machine, target) = try Self.started(strategy: .migrateToHealthy)
        let send = machine.handle(.picked(.init(target: target, panic: false)), now: .zero)
        guard case .send = send.action else { Issue.record("\(send.action)"); return }
        let gone = machine.handle(.upstreamFailed(.cancelled), now: .milliseconds(3))
        #expect(gone.action == .abandon)
        #expect(gone.effects.isEmpty)
        #expect(machine.record.status == 499)
        // A finished machine stays finished.
        #expect(machine.handle(.timerFired, now: .seconds(1)).action == .abandon)
    }

    @Test func aBodyTheKeyCannotTake_endsTheRequestWithItsError() throws {
        var (machine, target) = try Self.started(strategy: .completeOnOrigin)
        _ = machine.handle(.picked(.init(target: target, panic: true)), now: .zero)
        let error = GatewayError.invalidField("messages", "expected an array of messages")
        #expect(machine.handle(.bodyRejected(error), now: .zero).action == .respond(error))
        #expect(machine.record.status == 400)
        #expect(machine.record.outcome == .clientError)
    }

    @Test func panicPick_isCounted() throws {
        var (machine, target) = try Self.started(strategy: .completeOnOrigin)
        let step = machine.handle(.picked(.init(target: target, panic: true)), now: .zero)
        #expect(step.effects == [.breakerPanic])
    }

    @Test func theSameSeed_replaysTheSameBackoffs() throws {
        var world = World()
        world.answers["k1"] = [.status(500)]
        let runtime = try Self.config(
            providers: Self.openAI(["k1"]), gateway: #"{"retry": {"backoff_base": "1s", "backoff_max": "10s"}}"#)
        let a = Self.run(runtime: runtime, world: world)
        let b = Self.run(runtime: runtime, world: world)
        #expect(a.waits == b.waits)
        #expect(a.elapsed == b.elapsed)
    }
}
