import EventLog
import Testing

@testable import Gateway

/// The weight controller as a pure state machine: time and the key-performance windows in,
/// decisions out.
@Suite struct WeightControllerTests {
    typealias Decision = WeightController.Decision
    typealias KeyInput = WeightController.KeyInput

    static let minute: UInt64 = 60_000
    /// A window start well after the epoch; evaluations happen 1 s into a window.
    static let t0: UInt64 = 28_333_333 * minute

    static func usage(_ requests: UInt64, errors: UInt64 = 0, latencyMs: UInt64 = 100) -> UsageSummary {
        var u = UsageSummary()
        u.requests = requests
        u.errors = errors
        u.latencySumMicros = requests * latencyMs * 1_000
        return u
    }

    static func key(
        _ id: String, provider: String = "openai", configured: Double = 1, current: Double? = nil,
        lastChange: WeightChanged? = nil, windows: [UInt64: UsageSummary], models: [String] = ["gpt-4o-mini"]
    ) -> KeyInput {
        KeyInput(
            keyID: id, provider: provider, configuredWeight: configured, currentWeight: current ?? configured,
            lastChange: lastChange, windows: windows, models: models)
    }

    /// Two evaluations a second apart, ending at `nowMillis`, and their decisions together: a
    /// latency outlier is broken only once it held `latencyBreakEvaluations` (2) in a row.
    static func twice(
        _ controller: inout WeightController, nowMillis: UInt64, keys: [KeyInput], peers: [KeyInput] = [],
        brokenKeys: Set<String> = []
    ) -> [Decision] {
        controller.evaluate(nowMillis: nowMillis - 1_000, keys: keys, peers: peers, brokenKeys: brokenKeys)
            + controller.evaluate(nowMillis: nowMillis, keys: keys, peers: peers, brokenKeys: brokenKeys)
    }

    /// A key serving the same model at a steady 100 ms over the last minutes: the peer a key's
    /// latency is compared with.
    static func steadyPeer(_ id: String = "k-peer", latencyMs: UInt64 = 100) -> KeyInput {
        var windows: [UInt64: UsageSummary] = [:]
        for i: UInt64 in 0...6 { windows[t0 - i * minute] = usage(50, latencyMs: latencyMs) }
        return key(id, windows: windows)
    }

    struct Change: Equatable, CustomStringConvertible {
        var key: String
        var old: Double
        var new: Double
        var description: String { "\(key): \(old) → \(new)" }
    }

    static func changes(_ decisions: [Decision], key: String? = nil) -> [Change] {
        decisions.compactMap {
            guard case .setWeight(let id, let old, let new, _) = $0, key == nil || id == key else { return nil }
            return Change(key: id, old: old, new: new)
        }
    }

    static func breaks(_ decisions: [Decision]) -> [(key: String, until: UInt64, reason: String)] {
        decisions.compactMap {
            guard case .temporaryBreak(let id, let until, let reason) = $0 else { return nil }
            return (id, until, reason)
        }
    }

    /// Alert transitions as (rule, subject) → firing.
    static func alerts(_ decisions: [Decision]) -> [AlertKey: Bool] {
        var out: [AlertKey: Bool] = [:]
        for d in decisions {
            if let fired = d.alertFired { out[AlertKey(rule: fired.rule, scope: fired.scope)] = fired.firing }
        }
        return out
    }

    static func near(_ a: Double, _ b: Double) -> Bool { abs(a - b) < 1e-9 }

    /// The shell's part: applies each weight change to the key's current weight and last change,
    /// as the views would after the `weight.changed` event.
    struct Shell {
        var controller: WeightController
        var keys: [String: KeyInput] = [:]
        var log: [(at: UInt64, decisions: [Decision])] = []

        init(settings: WeightController.Settings = .init(), keys: [KeyInput]) {
            controller = WeightController(settings: settings)
            for k in keys { self.keys[k.keyID] = k }
        }

        mutating func step(at now: UInt64, reversed: Bool = false) -> [Decision] {
            let ordered = keys.values.sorted { ($0.keyID < $1.keyID) != reversed }
            let decisions = controller.evaluate(nowMillis: now, keys: ordered)
            for d in decisions {
                guard case .setWeight(let id, _, let new, _) = d else { continue }
                keys[id]!.currentWeight = new
                keys[id]!.lastChange = d.weightChanged(node: "n1")
            }
            log.append((now, decisions))
            return decisions
        }
    }

    // MARK: Error rate

    struct ErrorCase: Sendable, CustomTestStringConvertible {
        var requests: UInt64
        var errors: UInt64
        var reduces: Bool
        var testDescription: String { "\(errors)/\(requests) errors" }
    }

    @Test(arguments: [
        ErrorCase(requests: 100, errors: 3, reduces: true),
        ErrorCase(requests: 100, errors: 2, reduces: false),
        ErrorCase(requests: 1_000, errors: 25, reduces: false),  // exactly 2.5 % is not above
        ErrorCase(requests: 1_000, errors: 26, reduces: true),
        ErrorCase(requests: 20, errors: 1, reduces: true),  // minimumSamples reached
        ErrorCase(requests: 19, errors: 19, reduces: false),  // below minimumSamples
        ErrorCase(requests: 0, errors: 0, reduces: false),
    ])
    func evaluate_errorRateAboveThreshold_reducesTheWeightOnce(_ c: ErrorCase) {
        var controller = WeightController()
        let now = Self.t0 + 1_000
        let windows = [Self.t0: Self.usage(c.requests, errors: c.errors)]
        let first = controller.evaluate(nowMillis: now, keys: [Self.key("k1", windows: windows)])
        let firing = Self.alerts(first)[AlertKey(rule: "high_error_rate", scope: "k1")]
        guard c.reduces else {
            #expect(Self.changes(first).isEmpty)
            #expect(firing == nil)
            return
        }
        #expect(Self.changes(first) == [Change(key: "k1", old: 1, new: 0.5)])
        #expect(firing == true)
        if case .setWeight(_, _, _, let reason) = first.first(where: { !Self.changes([$0]).isEmpty }) {
            #expect(reason.hasPrefix("error rate "))
            #expect(reason.hasSuffix(" > 2.5%"))
        }
        // Same evidence a second later, weight applied: no second cut within the interval.
        let again = controller.evaluate(
            nowMillis: now + 1_000, keys: [Self.key("k1", current: 0.5, windows: windows)])
        #expect(Self.changes(again).isEmpty)
        #expect(Self.alerts(again).isEmpty, "already firing")
    }

    @Test func evaluate_judgesOnlyTheRecentWindows() {
        var controller = WeightController()
        // All errors two windows back (recentWindows = 2: this one and the one before).
        let old = [Self.t0 - 2 * Self.minute: Self.usage(500, errors: 500), Self.t0: Self.usage(100)]
        #expect(
            Self.changes(controller.evaluate(nowMillis: Self.t0 + 1_000, keys: [Self.key("k1", windows: old)])).isEmpty)
        // The previous window counts.
        let previous = [Self.t0 - Self.minute: Self.usage(100, errors: 10), Self.t0: Self.usage(10)]
        #expect(
            Self.changes(controller.evaluate(nowMillis: Self.t0 + 2_000, keys: [Self.key("k1", windows: previous)]))
                == [Change(key: "k1", old: 1, new: 0.5)])
    }

    @Test(
        arguments: [
            (1.0, 0.5), (0.04, 0.02), (0.015, 0.01), (0.01, nil),
        ] as [(Double, Double?)])
    func evaluate_reduction_neverGoesBelowMinWeightFraction(current: Double, expected: Double?) {
        var controller = WeightController()
        let input = Self.key("k1", configured: 1, current: current, windows: [Self.t0: Self.usage(100, errors: 50)])
        let changes = Self.changes(controller.evaluate(nowMillis: Self.t0, keys: [input]))
        #expect(changes == (expected.map { [Change(key: "k1", old: current, new: $0)] } ?? []))
    }

    // MARK: Latency

    struct LatencyCase: Sendable, CustomTestStringConvertible {
        /// Earlier windows, newest first: (requests, average latency ms).
        var earlier: [(UInt64, UInt64)]
        var recentLatency: UInt64
        var recentRequests: UInt64 = 50
        var breaks: Bool
        var testDescription: String { "earlier \(earlier), now \(recentLatency) ms × \(recentRequests)" }
    }

    @Test(arguments: [
        LatencyCase(earlier: [(50, 100), (50, 100), (50, 100)], recentLatency: 151, breaks: true),
        LatencyCase(earlier: [(50, 100), (50, 100), (50, 100)], recentLatency: 150, breaks: false),
        LatencyCase(earlier: [(50, 100), (50, 100)], recentLatency: 1_000, breaks: false),  // no baseline yet
        LatencyCase(earlier: [(50, 100), (50, 100), (19, 100)], recentLatency: 1_000, breaks: false),  // thin window
        LatencyCase(earlier: [(50, 100), (50, 100), (50, 300)], recentLatency: 151, breaks: true),  // median, not mean
        LatencyCase(
            earlier: [(50, 100), (50, 100), (50, 100)], recentLatency: 1_000, recentRequests: 19, breaks: false),
        LatencyCase(earlier: Array(repeating: (50, 100), count: 12), recentLatency: 151, breaks: true),
    ])
    func evaluate_latencyAboveBaselineFactor_breaksTheCircuit(_ c: LatencyCase) {
        var windows = [Self.t0: Self.usage(c.recentRequests, latencyMs: c.recentLatency)]
        for (i, (requests, latency)) in c.earlier.enumerated() {
            windows[Self.t0 - UInt64(i + 2) * Self.minute] = Self.usage(requests, latencyMs: latency)
        }
        var controller = WeightController()
        let now = Self.t0 + 1_000
        let decisions = Self.twice(
            &controller, nowMillis: now, keys: [Self.key("k1", windows: windows), Self.steadyPeer()])
        let breaks = Self.breaks(decisions)
        #expect(Self.changes(decisions).isEmpty, "latency alone does not change the weight")
        guard c.breaks else {
            #expect(breaks.isEmpty)
            return
        }
        #expect(breaks.count == 1)
        #expect(breaks.first?.key == "k1")
        #expect(breaks.first?.until == now + 30_000)
        #expect(breaks.first?.reason == "avg latency \(c.recentLatency) ms > 1.5 × baseline 100 ms, peers 100 ms")
        #expect(Self.alerts(decisions)[AlertKey(rule: "high_latency", scope: "k1")] == true)
    }

    @Test func evaluate_afterABreak_judgesOnlyWindowsThatBeganAfterIt() {
        var windows: [UInt64: UsageSummary] = [:]
        for i: UInt64 in 2...4 { windows[Self.t0 - i * Self.minute] = Self.usage(50) }
        windows[Self.t0] = Self.usage(50, latencyMs: 400)
        var controller = WeightController()
        var peer = Self.steadyPeer()
        peer.windows[Self.t0 + Self.minute] = Self.usage(50)
        let first = Self.breaks(
            Self.twice(&controller, nowMillis: Self.t0 + 1_000, keys: [Self.key("k1", windows: windows), peer]))
        #expect(first.map { $0.until } == [Self.t0 + 31_000])
        // During the break, and after it over the same (pre-break) windows: nothing new.
        for now in [Self.t0 + 11_000, Self.t0 + 31_000, Self.t0 + 59_000] {
            let d = controller.evaluate(nowMillis: now, keys: [Self.key("k1", windows: windows), peer])
            #expect(Self.breaks(d).isEmpty, "at +\(now - Self.t0) ms")
        }
        // A window that began after the break and is still slow: a second break.
        windows[Self.t0 + Self.minute] = Self.usage(50, latencyMs: 400)
        let now = Self.t0 + Self.minute + 1_000
        let second = Self.breaks(
            Self.twice(&controller, nowMillis: now, keys: [Self.key("k1", windows: windows), peer]))
        #expect(second.map { $0.until } == [now + 30_000])
    }

    // MARK: Outliers

    /// `k1`'s windows: three earlier minutes at `baselineMs`, then the current one at `recentMs`.
    static func slowing(
        _ id: String, baselineMs: UInt64 = 100, recentMs: UInt64, provider: String = "openai",
        models: [String] = ["gpt-4o-mini"]
    ) -> KeyInput {
        var windows = [t0: usage(50, latencyMs: recentMs)]
        for i: UInt64 in 2...4 { windows[t0 - i * minute] = usage(50, latencyMs: baselineMs) }
        return key(id, provider: provider, windows: windows, models: models)
    }

    static func usageMicros(_ requests: UInt64, latencyMicros: UInt64) -> UsageSummary {
        var u = UsageSummary()
        u.requests = requests
        u.latencySumMicros = requests * latencyMicros
        return u
    }

    @Test func evaluate_everyKeySlowTogether_breaksNone() {
        var controller = WeightController()
        let keys = ["k1", "k2", "k3"].map { Self.slowing($0, recentMs: 400) }
        let decisions = Self.twice(&controller, nowMillis: Self.t0 + 1_000, keys: keys)
        #expect(Self.breaks(decisions).isEmpty)
        #expect(Self.alerts(decisions).filter { $0.key.rule == "high_latency" && $0.value }.isEmpty)
    }

    @Test func evaluate_oneKeySlowerThanItsPeers_breaksOnlyIt() {
        var controller = WeightController()
        let keys = [Self.slowing("k1", recentMs: 400), Self.slowing("k2", recentMs: 100), Self.steadyPeer("k3")]
        let breaks = Self.breaks(Self.twice(&controller, nowMillis: Self.t0 + 1_000, keys: keys))
        #expect(breaks.map(\.key) == ["k1"])
    }

    /// One evaluation can catch a change every key shares half-way through a window: an outlier
    /// is broken only when it stays one.
    @Test func evaluate_anOutlierForOneEvaluationOnly_isNotBroken() {
        var controller = WeightController()
        let slow = [Self.slowing("k1", recentMs: 400), Self.slowing("k2", recentMs: 100), Self.steadyPeer("k3")]
        let calm = [Self.slowing("k1", recentMs: 100), Self.slowing("k2", recentMs: 100), Self.steadyPeer("k3")]
        #expect(Self.breaks(controller.evaluate(nowMillis: Self.t0 + 1_000, keys: slow)).isEmpty)
        #expect(Self.breaks(controller.evaluate(nowMillis: Self.t0 + 2_000, keys: calm)).isEmpty)
        #expect(Self.breaks(controller.evaluate(nowMillis: Self.t0 + 3_000, keys: slow)).isEmpty)
        #expect(Self.breaks(controller.evaluate(nowMillis: Self.t0 + 4_000, keys: slow)).map(\.key) == ["k1"])
    }

    /// The failure measured on a loaded node: a 0.03 ms upstream whose latency rose to 8 ms for
    /// every key, one of them a little more.
    @Test func evaluate_latenciesUnderTheFloor_areNoise() {
        var controller = WeightController()
        var windows: [UInt64: UsageSummary] = [:]
        var peerWindows: [UInt64: UsageSummary] = [:]
        for i: UInt64 in 2...4 {
            windows[Self.t0 - i * Self.minute] = Self.usageMicros(50, latencyMicros: 30)
            peerWindows[Self.t0 - i * Self.minute] = Self.usageMicros(50, latencyMicros: 30)
        }
        windows[Self.t0] = Self.usageMicros(500, latencyMicros: 8_000)
        peerWindows[Self.t0] = Self.usageMicros(500, latencyMicros: 5_000)
        let keys = [Self.key("k1", windows: windows), Self.key("k2", windows: peerWindows)]
        #expect(Self.breaks(Self.twice(&controller, nowMillis: Self.t0 + 1_000, keys: keys)).isEmpty)
        // Above the floor the same shape is an outlier: 16 ms > 1.5 × max(5 ms, 10 ms).
        windows[Self.t0] = Self.usageMicros(500, latencyMicros: 16_000)
        let again = [Self.key("k1", windows: windows), Self.key("k2", windows: peerWindows)]
        #expect(Self.breaks(Self.twice(&controller, nowMillis: Self.t0 + 3_000, keys: again)).map(\.key) == ["k1"])
    }

    @Test func evaluate_aLoneKey_isNeverBroken() {
        var controller = WeightController()
        let decisions = Self.twice(&controller, nowMillis: Self.t0 + 1_000, keys: [Self.slowing("k1", recentMs: 1_000)])
        #expect(Self.breaks(decisions).isEmpty)
    }

    struct EjectionCase: Sendable, CustomTestStringConvertible {
        var keys: Int
        var slow: Int
        var alreadyBroken: Int = 0
        var maxEjection = 0.5
        var broken: Int
        /// A break held back by the cap is said in the latency alert (not when no peer is left
        /// to judge against).
        var saysHeld = true
        var testDescription: String {
            "\(slow) of \(keys) slow, \(alreadyBroken) broken, cap \(Int(maxEjection * 100))% → \(broken)"
        }
    }

    @Test(arguments: [
        EjectionCase(keys: 2, slow: 1, broken: 1),
        // The second outlier is capped in the evaluation after the first broke: its alert fired already.
        EjectionCase(keys: 3, slow: 2, broken: 1, saysHeld: false),
        EjectionCase(keys: 4, slow: 2, broken: 2),
        EjectionCase(keys: 5, slow: 2, broken: 2),
        EjectionCase(keys: 4, slow: 1, alreadyBroken: 2, broken: 0),
        EjectionCase(keys: 6, slow: 1, alreadyBroken: 2, broken: 1),
        EjectionCase(keys: 2, slow: 1, maxEjection: 1.0, broken: 1),
        EjectionCase(keys: 3, slow: 1, maxEjection: 0.2, broken: 0),
        EjectionCase(keys: 4, slow: 1, alreadyBroken: 2, maxEjection: 1.0, broken: 1),
        // Never the last one.
        EjectionCase(keys: 3, slow: 1, alreadyBroken: 2, maxEjection: 1.0, broken: 0, saysHeld: false),
    ])
    func evaluate_breaks_stayWithinMaxEjection(_ c: EjectionCase) {
        var settings = WeightController.Settings()
        settings.maxEjectionFraction = c.maxEjection
        var controller = WeightController(settings: settings)
        let keys = (0..<c.keys).map { i in
            i < c.slow ? Self.slowing("k\(i)", recentMs: 400) : Self.slowing("k\(i)", recentMs: 100)
        }
        let brokenInView = Set((0..<c.alreadyBroken).map { "k\(c.keys - 1 - $0)" })
        let decisions = Self.twice(&controller, nowMillis: Self.t0 + 1_000, keys: keys, brokenKeys: brokenInView)
        let breaks = Self.breaks(decisions)
        #expect(breaks.count == c.broken, "\(breaks.map(\.key))")
        #expect(Set(breaks.map(\.key)).isSubset(of: Set((0..<c.slow).map { "k\($0)" })))
        if c.broken < c.slow && c.saysHeld {
            let held = decisions.contains {
                if case .alert("high_latency", _, true, _, _, let detail) = $0 {
                    detail.contains("not broken")
                } else {
                    false
                }
            }
            #expect(held, "the held-back break is said in the latency alert")
        }
    }

    @Test func evaluate_peersOfOtherProviders_areComparedButNotDecidedFor() {
        var controller = WeightController()
        let owned = Self.slowing("k1", recentMs: 400, provider: "openai")
        let other = Self.slowing("k2", recentMs: 100, provider: "azure")
        // Without the other provider's key, k1 has no peer: not judged.
        #expect(Self.breaks(controller.evaluate(nowMillis: Self.t0 + 1_000, keys: [owned])).isEmpty)
        var fresh = WeightController()
        let decisions = Self.twice(&fresh, nowMillis: Self.t0 + 1_000, keys: [owned], peers: [owned, other])
        #expect(Self.breaks(decisions).map(\.key) == ["k1"])
        #expect(
            decisions.allSatisfy { d in
                if case .setWeight(let id, _, _, _) = d { id == "k1" } else { true }
            })
    }

    @Test func evaluate_peersAreKeysOfTheSameModel() {
        var controller = WeightController()
        let keys = [
            Self.slowing("k1", recentMs: 400, models: ["gpt-4o"]),
            Self.slowing("k2", recentMs: 100, models: ["gpt-4o-mini"]),
        ]
        #expect(Self.breaks(Self.twice(&controller, nowMillis: Self.t0 + 1_000, keys: keys)).isEmpty)
    }

    @Test func evaluate_errorsEveryKeyShares_moveNoWeight_oneKeysOwnErrorsDo() {
        var controller = WeightController()
        let shared = [
            Self.key("k1", windows: [Self.t0: Self.usage(100, errors: 10)]),
            Self.key("k2", windows: [Self.t0: Self.usage(100, errors: 9)]),
        ]
        let first = controller.evaluate(nowMillis: Self.t0 + 1_000, keys: shared)
        #expect(Self.changes(first).isEmpty)
        #expect(Self.alerts(first)[AlertKey(rule: "high_error_rate", scope: "k1")] == nil)
        var other = WeightController()
        let own = [
            Self.key("k1", windows: [Self.t0: Self.usage(100, errors: 10)]),
            Self.key("k2", windows: [Self.t0: Self.usage(100, errors: 0)]),
        ]
        let decisions = other.evaluate(nowMillis: Self.t0 + 1_000, keys: own)
        #expect(Self.changes(decisions) == [Change(key: "k1", old: 1, new: 0.5)])
        let reason = decisions.compactMap { d -> String? in
            if case .setWeight(_, _, _, let r) = d { r } else { nil }
        }
        #expect(reason == ["error rate 10% > 2.5%, peers 0%"])
    }

    // MARK: Rebalancing

    struct RebalanceCase: Sendable, CustomTestStringConvertible {
        var dominant: UInt64
        var other: UInt64
        var otherErrors: UInt64 = 0
        var otherConfigured: Double = 1
        var otherCurrent: Double = 1
        var rebalances: Bool
        var alertFires: Bool
        var testDescription: String {
            "\(dominant) vs \(other) (errors \(otherErrors), weight \(otherCurrent)/\(otherConfigured))"
        }
    }

    @Test(arguments: [
        RebalanceCase(dominant: 90, other: 10, rebalances: true, alertFires: true),
        RebalanceCase(dominant: 81, other: 19, rebalances: true, alertFires: true),
        RebalanceCase(dominant: 80, other: 20, rebalances: false, alertFires: false),  // exactly 80 %
        RebalanceCase(dominant: 15, other: 2, rebalances: false, alertFires: false),  // too few requests
        RebalanceCase(dominant: 180, other: 20, otherErrors: 5, rebalances: false, alertFires: true),  // other failing
        RebalanceCase(dominant: 90, other: 10, otherCurrent: 0, rebalances: false, alertFires: true),  // other at 0
        RebalanceCase(
            dominant: 90, other: 10, otherConfigured: 0, otherCurrent: 0, rebalances: false, alertFires: false),
    ])
    func evaluate_dominantKeyWithAHealthyPeer_isRebalanced(_ c: RebalanceCase) {
        var controller = WeightController()
        let keys = [
            Self.key("k-big", configured: 10, windows: [Self.t0: Self.usage(c.dominant)]),
            Self.key(
                "k-small", configured: c.otherConfigured, current: c.otherCurrent,
                windows: [Self.t0: Self.usage(c.other, errors: c.otherErrors)]),
        ]
        let decisions = controller.evaluate(nowMillis: Self.t0 + 1_000, keys: keys)
        let changes = Self.changes(decisions, key: "k-big")
        #expect((Self.alerts(decisions)[AlertKey(rule: "traffic_imbalance", scope: "openai")] == true) == c.alertFires)
        guard c.rebalances else {
            #expect(changes.isEmpty)
            return
        }
        // Lowered to 70 % of the provider's weight: 0.7 / 0.3 × the other key's weight.
        #expect(changes.count == 1)
        #expect(changes.first.map { $0.old == 10 && Self.near($0.new, 7.0 / 3.0 * c.otherCurrent) } == true)
        let reason = decisions.compactMap { d -> String? in
            if case .setWeight("k-big", _, _, let r) = d { r } else { nil }
        }
        #expect(reason.first?.hasPrefix("rebalance:") == true)
    }

    @Test func evaluate_rebalancedKey_recoversOnlyUpToItsRebalanceCap() {
        var shell = Shell(keys: [
            Self.key("k-big", configured: 10, windows: [:]), Self.key("k-small", configured: 1, windows: [:]),
        ])
        // One bad window for k-big at k = 1, then clean.
        for k: UInt64 in 0..<8 {
            let start = Self.t0 + k * Self.minute
            // 90 % of the traffic throughout; growing so the bad window is diluted once it is past.
            let (big, small): (UInt64, UInt64) = k == 0 ? (90, 10) : k == 1 ? (900, 100) : (9_000, 1_000)
            shell.keys["k-big"]!.windows[start] = Self.usage(big, errors: k == 1 ? 90 : 0)
            shell.keys["k-small"]!.windows[start] = Self.usage(small)
            _ = shell.step(at: start + 1_000)
        }
        let changes = shell.log.flatMap { Self.changes($0.decisions, key: "k-big") }
        let cap = 7.0 / 3.0
        #expect(changes.count == 3, "\(changes)")
        guard changes.count == 3 else { return }
        #expect(changes[0].old == 10 && Self.near(changes[0].new, cap), "rebalanced")
        #expect(Self.near(changes[1].new, cap / 2), "reduced for errors")
        #expect(Self.near(changes[2].new, cap), "recovered to the cap, not to 10")
        #expect(Self.changes(shell.log.flatMap { $0.decisions }, key: "k-small").isEmpty)
    }

    // MARK: Recovery

    @Test(arguments: [1, 2, 3, 5])
    func evaluate_reducedKey_recoversGraduallyAfterCleanEvaluations(recoveryEvaluations: Int) {
        var settings = WeightController.Settings()
        settings.recoveryEvaluations = recoveryEvaluations
        var shell = Shell(settings: settings, keys: [Self.key("k1", windows: [:])])
        var changedAt: [Int] = []
        for k in 0..<(recoveryEvaluations + 5) {
            let start = Self.t0 + UInt64(k) * Self.minute
            // 10 % errors in the first window, then clean and busy.
            shell.keys["k1"]!.windows[start] = k == 0 ? Self.usage(100, errors: 10) : Self.usage(1_000)
            if !Self.changes(shell.step(at: start + 1_000)).isEmpty { changedAt.append(k) }
        }
        #expect(changedAt == [0, recoveryEvaluations, recoveryEvaluations + 1])
        let weights = shell.log.flatMap { Self.changes($0.decisions) }.map(\.new)
        #expect(weights == [0.5, 0.75, 1.0], "cut in half, then back by 25 % of the configured weight")
        let recorded = shell.keys["k1"]!.lastChange
        #expect(recorded?.actor == "controller:n1")
        #expect(recorded?.reason.hasPrefix("recovered: ") == true)
    }

    @Test func evaluate_afterAnOperatorChange_neverRaisesTheWeight() {
        var shell = Shell(keys: [Self.key("k1", windows: [:])])
        for k: UInt64 in 0..<8 {
            let start = Self.t0 + k * Self.minute
            shell.keys["k1"]!.windows[start] = k == 0 ? Self.usage(100, errors: 10) : Self.usage(1_000)
            if k == 1 {
                // An operator sets 0.4 after the controller's cut to 0.5.
                shell.keys["k1"]!.currentWeight = 0.4
                shell.keys["k1"]!.lastChange = WeightChanged(
                    keyID: "k1", oldWeight: 0.5, newWeight: 0.4, reason: "maintenance", actor: "operator:alice")
            }
            _ = shell.step(at: start + 1_000)
        }
        #expect(shell.log.flatMap { Self.changes($0.decisions) } == [Change(key: "k1", old: 1, new: 0.5)])
        #expect(shell.keys["k1"]!.currentWeight == 0.4)
    }

    @Test func evaluate_newOwner_carriesOnTheRecoveryOfAKeyTheControllerReduced() {
        // Another node's controller cut k1 to 0.5; this node takes the provider over.
        let earlier = WeightChanged(
            keyID: "k1", oldWeight: 1, newWeight: 0.5, reason: "error rate 10% > 2.5%", actor: "controller:n2")
        var shell = Shell(keys: [Self.key("k1", current: 0.5, lastChange: earlier, windows: [:])])
        for k: UInt64 in 0..<5 {
            let start = Self.t0 + k * Self.minute
            shell.keys["k1"]!.windows[start] = Self.usage(1_000)
            _ = shell.step(at: start + 1_000)
        }
        #expect(
            shell.log.flatMap { Self.changes($0.decisions) } == [
                Change(key: "k1", old: 0.5, new: 0.75), Change(key: "k1", old: 0.75, new: 1),
            ])
    }

    // MARK: Flapping

    struct IntervalCase: Sendable, CustomTestStringConvertible {
        var intervalSeconds: Int64
        var changeSeconds: [UInt64]
        var testDescription: String { "every \(intervalSeconds) s" }
    }

    @Test(arguments: [
        IntervalCase(intervalSeconds: 60, changeSeconds: [0, 60, 120, 180]),
        IntervalCase(intervalSeconds: 30, changeSeconds: [0, 30, 60, 90, 120, 150, 180]),
        IntervalCase(intervalSeconds: 45, changeSeconds: [0, 50, 100, 150]),
    ])
    func evaluate_adjustmentInterval_spacesTheChangesOfAKey(_ c: IntervalCase) {
        var settings = WeightController.Settings()
        settings.adjustmentInterval = .seconds(c.intervalSeconds)
        settings.minWeightFraction = 0
        var shell = Shell(settings: settings, keys: [Self.key("k1", windows: [:])])
        var changedAt: [UInt64] = []
        for s in stride(from: UInt64(0), through: 180, by: 10) {
            let now = Self.t0 + s * 1_000
            shell.keys["k1"]!.windows[now / Self.minute * Self.minute] = Self.usage(100, errors: 10)
            if !Self.changes(shell.step(at: now)).isEmpty { changedAt.append(s) }
        }
        #expect(changedAt == c.changeSeconds)
    }

    @Test func evaluate_maxAdjustmentsPerMinute_holdsChangesBackAndAlerts() {
        var settings = WeightController.Settings()
        settings.adjustmentInterval = .zero
        settings.minWeightFraction = 0
        settings.maxAdjustmentsPerMinute = 10
        var shell = Shell(settings: settings, keys: [Self.key("k1", windows: [:])])
        var changedAt: [UInt64] = []
        var frequencyAlerts: [(at: UInt64, firing: Bool)] = []
        for s in UInt64(0)..<180 {
            let now = Self.t0 + s * 1_000
            shell.keys["k1"]!.windows[now / Self.minute * Self.minute] = Self.usage(100, errors: 10)
            let decisions = shell.step(at: now)
            if !Self.changes(decisions).isEmpty { changedAt.append(s) }
            if let f = Self.alerts(decisions)[AlertKey(rule: "weight_adjustment_frequency", scope: "k1")] {
                frequencyAlerts.append((s, f))
            }
        }
        // Ten changes, then held back until the oldest is 60 s old.
        let expected: [UInt64] = Array(0..<10) + Array(60..<70) + Array(120..<130)
        #expect(changedAt == expected)
        for t in changedAt {
            #expect(changedAt.filter { $0 >= t && $0 < t + 60 }.count <= 10, "more than 10 in the minute from \(t) s")
        }
        #expect(frequencyAlerts.first.map { $0.at == 10 && $0.firing } == true)
    }

    // MARK: Determinism

    @Test func evaluate_sameInputs_giveTheSameDecisions_whateverTheKeyOrder() {
        func run(reversed: Bool) -> [[Decision]] {
            var shell = Shell(keys: [
                Self.key("a1", provider: "anthropic", configured: 5, windows: [:]),
                Self.key("a2", provider: "anthropic", configured: 1, windows: [:]),
                // Each its own model: no peers, so each is judged on its own errors.
                Self.key("o1", provider: "openai", windows: [:], models: ["model-o1"]),
                Self.key("o2", provider: "openai", windows: [:], models: ["model-o2"]),
            ])
            for k: UInt64 in 0..<10 {
                let start = Self.t0 + k * Self.minute
                shell.keys["a1"]!.windows[start] = Self.usage(95, errors: k % 3 == 0 ? 5 : 0, latencyMs: 100)
                shell.keys["a2"]!.windows[start] = Self.usage(5)
                shell.keys["o1"]!.windows[start] = Self.usage(40, errors: k == 4 ? 4 : 0, latencyMs: k == 7 ? 500 : 90)
                shell.keys["o2"]!.windows[start] = Self.usage(60, errors: k == 4 ? 6 : 0, latencyMs: 110)
                _ = shell.step(at: start + 1_000 + k * 7, reversed: reversed)
            }
            return shell.log.map { $0.decisions }
        }
        let a = run(reversed: false)
        // Both openai keys change in the same evaluation, so their order shows.
        #expect(Self.changes(a[4]).map(\.key).filter { $0.hasPrefix("o") } == ["o1", "o2"])
        #expect(a == run(reversed: false))
        #expect(a == run(reversed: true))
    }

    // MARK: Ownership

    static let ids = (0..<600).map { "openai/key-\($0)" }
    static let nodes = ["bifrost-node-1", "bifrost-node-2", "bifrost-node-3", "bifrost-node-4", "bifrost-node-5"]

    @Test func owner_isOneLiveNode_andTheSameForAnyOrderOfMembers() {
        let reversed = Array(Self.nodes.reversed())
        let shuffled = [Self.nodes[2], Self.nodes[0], Self.nodes[4], Self.nodes[1], Self.nodes[3]]
        var load: [String: Int] = [:]
        for id in Self.ids {
            let owner = WeightController.owner(of: id, among: Self.nodes)
            #expect(owner.map { Self.nodes.contains($0) } == true)
            #expect(WeightController.owner(of: id, among: reversed) == owner)
            #expect(WeightController.owner(of: id, among: shuffled) == owner)
            load[owner!, default: 0] += 1
        }
        // Spread over every node (600 ids, 5 nodes: about 120 each).
        #expect(load.count == 5)
        #expect(load.values.allSatisfy { $0 > 60 && $0 < 180 }, "\(load)")
        #expect(WeightController.owner(of: "openai", among: []) == nil)
        #expect(WeightController.owner(of: "openai", among: ["solo"]) == "solo")
    }

    @Test(arguments: WeightControllerTests.nodes)
    func owner_removingANode_movesOnlyTheIdsItOwned(removed: String) {
        let remaining = Self.nodes.filter { $0 != removed }
        var moved = 0
        for id in Self.ids {
            let before = WeightController.owner(of: id, among: Self.nodes)!
            let after = WeightController.owner(of: id, among: remaining)!
            if before == removed {
                #expect(after != removed)
                moved += 1
            } else {
                #expect(after == before, "\(id) moved from \(before) to \(after)")
            }
        }
        #expect(moved > 0)
    }

    @Test func owner_addingANode_movesIdsOnlyToIt() {
        let grown = Self.nodes + ["bifrost-node-6"]
        var gained = 0
        for id in Self.ids {
            let before = WeightController.owner(of: id, among: Self.nodes)!
            let after = WeightController.owner(of: id, among: grown)!
            #expect(after == before || after == "bifrost-node-6")
            if after != before { gained += 1 }
        }
        #expect(gained > 50 && gained < 150, "about 1/6 of 600 ids: \(gained)")
    }

    // MARK: Settings from the config's alert rules

    @Test func settingsAdopt_takesTheThresholdsOfTheRulesItActsOn() throws {
        let rules = try [
            AlertEvaluator.Rule(
                name: "errors", condition: "error_rate > 0.05", scope: "model_key_id", action: "reduce_weight"),
            AlertEvaluator.Rule(
                name: "latency", condition: "avg_latency_ms > baseline * 2", scope: "model_key_id",
                action: "temporary_circuit_break"),
            AlertEvaluator.Rule(
                name: "imbalance", condition: "single_key_traffic_percentage >= 0.9", scope: "provider",
                action: "rebalance_weights"),
            // Not the controller's: a notify rule, and a "less than" condition.
            AlertEvaluator.Rule(name: "n", condition: "error_rate > 0.5", scope: "model_key", action: "notify"),
            AlertEvaluator.Rule(name: "l", condition: "error_rate < 0.01", scope: "model_key", action: "reduce_weight"),
        ]
        var settings = WeightController.Settings()
        settings.adopt(rules)
        #expect(settings.errorRateThreshold == 0.05)
        #expect(settings.latencyFactor == 2)
        #expect(settings.trafficShareThreshold == 0.9)
        var defaults = WeightController.Settings()
        defaults.adopt([])
        #expect(defaults == WeightController.Settings())
    }
}
