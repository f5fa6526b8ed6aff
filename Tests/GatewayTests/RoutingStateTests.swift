import EventLog
import Testing

@testable import Gateway

/// A node's routing over its breakers: the ejection cap and panic routing keep a model up
/// whatever its keys' breakers say.
@Suite struct RoutingStateTests {
    static let t0: UInt64 = 1_700_000_000_000

    /// `keys` serve `gpt-4o-mini`; `k-other` serves `gpt-4o` alone.
    static func runtime(keys: [String]) throws -> RuntimeConfig {
        let entries = keys.map { #"{"name": "\#($0)", "value": "sk-\#($0)", "models": ["gpt-4o-mini"]}"# }
        let config = try BifrostConfig.parse(
            Array(
                """
                {"providers": {"openai": {"type": "openai", "keys": [\(entries.joined(separator: ", ")),
                  {"name": "k-other", "value": "sk-other", "models": ["gpt-4o"]}]}}}
                """.utf8))
        return try RuntimeConfig(config, environment: [:])
    }

    static func state(
        keys: [String], maxEjection: Double = 0.5, views: ViewState = ViewState()
    ) throws -> (RoutingState, Catalog.Resolution) {
        let runtime = try runtime(keys: keys)
        var settings = CircuitBreaker.Settings()
        settings.failureThreshold = 3
        let state = RoutingState(
            runtime: runtime, views: views, settings: settings, maxEjectionFraction: maxEjection, nowMillis: t0)
        return (state, runtime.catalog.resolve("gpt-4o-mini")!)
    }

    static func fail(_ key: String, times: Int = 3, in state: inout RoutingState) -> String {
        var name = ""
        for _ in 0..<times { name = state.record(key: key, success: false, nowMillis: t0) }
        return name
    }

    @Test func record_failingKeys_openAtMostTheCapOfTheirModel() throws {
        var (state, _) = try Self.state(keys: ["k1", "k2", "k3", "k4"])
        #expect(Self.fail("k1", in: &state) == "open")
        #expect(Self.fail("k2", in: &state) == "open")
        // Two of four is the 50 % cap: the third failing key keeps taking traffic.
        #expect(Self.fail("k3", in: &state) == "closed")
        #expect(Self.fail("k3", in: &state) == "closed")
    }

    @Test func record_theLastClosedKey_neverOpens() throws {
        var (state, _) = try Self.state(keys: ["k1", "k2"], maxEjection: 1.0)
        #expect(Self.fail("k1", in: &state) == "open")
        #expect(Self.fail("k2", times: 10, in: &state) == "closed")
        // A model's only key stays closed too.
        #expect(Self.fail("k-other", times: 10, in: &state) == "closed")
    }

    @Test func record_anOpenSlotFreedByRecovery_letsTheNextKeyOpen() throws {
        var (state, route) = try Self.state(keys: ["k1", "k2"])
        #expect(Self.fail("k1", in: &state) == "open")
        #expect(Self.fail("k2", in: &state) == "closed")
        // k1's probe after its open duration succeeds: it closes, and k2 may open now.
        let later = Self.t0 + 31_000
        var probed = false
        for _ in 0..<4 {
            guard let pick = state.pick(route: route.routeName, targets: route.targets, excluded: [], nowMillis: later)
            else { break }
            if pick.target.keyID == "k1" {
                probed = true
                #expect(state.record(key: "k1", success: true, nowMillis: later) == "closed")
                break
            }
        }
        #expect(probed)
        #expect(state.record(key: "k2", success: false, nowMillis: later) == "open")
    }

    @Test func pick_skipsOpenKeys_whileAnotherIsClosed() throws {
        var (state, route) = try Self.state(keys: ["k1", "k2"])
        _ = Self.fail("k1", in: &state)
        for _ in 0..<6 {
            let pick = state.pick(route: route.routeName, targets: route.targets, excluded: [], nowMillis: Self.t0)
            #expect(pick?.target.keyID == "k2")
            #expect(pick?.panic == false)
        }
    }

    /// The weight controller broke k2 cluster-wide while this node's own breaker holds k1 open:
    /// every key of the model is open, and the model is still served.
    @Test func pick_everyUsableKeyOpen_routesPastTheBreakers() throws {
        var views = ViewState()
        views.alerts[AlertKey(rule: AlertEvaluator.temporaryBreakRule, scope: "k2")] = LWW(
            value: AlertFired(
                rule: AlertEvaluator.temporaryBreakRule, scope: "k2", firing: true, value: Double(Self.t0 + 30_000),
                action: "temporary_circuit_break", detail: "slow"),
            event: EventID(hlc: HLCTimestamp(wallMillis: Self.t0, logical: 0), origin: NodeID(name: "n1")))
        var (state, route) = try Self.state(keys: ["k1", "k2", "k3"], maxEjection: 1.0, views: views)
        _ = Self.fail("k1", in: &state)
        let normal = state.pick(route: route.routeName, targets: route.targets, excluded: [], nowMillis: Self.t0)
        #expect(normal == RoutingState.Pick(target: route.targets[2], panic: false))
        // k3 is excluded (already tried): only open keys are left, and one of them is picked.
        let panic = state.pick(route: route.routeName, targets: route.targets, excluded: ["k3"], nowMillis: Self.t0)
        #expect(panic?.panic == true)
        #expect(["k1", "k2"].contains(panic?.target.keyID ?? ""))
        // Nothing left at all: no key.
        let none = state.pick(
            route: route.routeName, targets: route.targets, excluded: ["k1", "k2", "k3"], nowMillis: Self.t0)
        #expect(none == nil)
    }
}
