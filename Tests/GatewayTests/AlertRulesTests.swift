import EventLog
import Testing

@testable import Gateway

/// The seed's alert rules: condition parsing, rule checking, and fire-at-once, clear-after-N
/// evaluation.
@Suite struct AlertRulesTests {
    typealias Condition = AlertEvaluator.Condition

    // MARK: Conditions

    @Test(arguments: [
        // The seed's three, exactly as written in its example configuration.
        ("error_rate > 0.025", Condition(metric: .errorRate, comparison: .greater, threshold: 0.025)),
        (
            "avg_latency_ms > baseline * 1.5",
            Condition(metric: .latencyAvgMillis, comparison: .greater, threshold: 1.5, relativeToBaseline: true)
        ),
        (
            "single_key_traffic_percentage > 0.8",
            Condition(metric: .singleKeyTrafficShare, comparison: .greater, threshold: 0.8)
        ),
        // Other spellings of the same grammar.
        (
            "latency_avg_ms > 1.5 * baseline",
            Condition(metric: .latencyAvgMillis, comparison: .greater, threshold: 1.5, relativeToBaseline: true)
        ),
        (
            "latency_p99_ms >= baseline",
            Condition(metric: .latencyP99Millis, comparison: .greaterOrEqual, threshold: 1, relativeToBaseline: true)
        ),
        (
            "Avg_Latency_Ms > Baseline * 1.5",
            Condition(metric: .latencyAvgMillis, comparison: .greater, threshold: 1.5, relativeToBaseline: true)
        ),
        ("  ERROR_RATE>=0.1  ", Condition(metric: .errorRate, comparison: .greaterOrEqual, threshold: 0.1)),
        ("error_rate > 2.5e-2", Condition(metric: .errorRate, comparison: .greater, threshold: 0.025)),
        ("requests <= 5", Condition(metric: .requests, comparison: .lessOrEqual, threshold: 5)),
        ("nodes_healthy < 3", Condition(metric: .nodesHealthy, comparison: .less, threshold: 3)),
        ("partitioned == 1", Condition(metric: .partitioned, comparison: .equal, threshold: 1)),
        (
            "weight_adjustments > 10",
            Condition(metric: .weightAdjustmentsPerMinute, comparison: .greater, threshold: 10)
        ),
        (
            "state_convergence_time_ms > 5000",
            Condition(metric: .convergenceMillis, comparison: .greater, threshold: 5000)
        ),
    ])
    func parseCondition_acceptsTheGrammar(text: String, expected: Condition) throws {
        #expect(try AlertEvaluator.parseCondition(text) == expected)
    }

    @Test func conditionDescription_isTheCanonicalSpelling_andParsesBack() throws {
        let cases = [
            ("error_rate > 0.025", "error_rate > 0.025"),
            ("avg_latency_ms > baseline * 1.5", "latency_avg_ms > 1.5 * baseline"),
            ("single_key_traffic_percentage > 0.8", "single_key_traffic_share > 0.8"),
        ]
        for (text, canonical) in cases {
            let condition = try AlertEvaluator.parseCondition(text)
            #expect(condition.description == canonical)
            #expect(try AlertEvaluator.parseCondition(canonical) == condition)
        }
    }

    @Test(
        arguments: [
            ("", AlertRuleError.Code.invalidCondition, "empty"),
            ("   ", .invalidCondition, "empty"),
            ("bogus > 1", .unknownMetric, #"unknown metric "bogus""#),
            ("> 0.1", .invalidCondition, "expected a metric name first"),
            ("baseline > 1", .invalidCondition, "expected a metric name first"),
            ("error_rate 0.025", .invalidCondition, "expected a comparison"),
            ("error_rate", .invalidCondition, "expected a comparison"),
            ("error_rate >", .invalidCondition, #"after ">""#),
            ("error_rate > >", .invalidCondition, #"got ">""#),
            ("error_rate = 0.1", .invalidCondition, #"use "==""#),
            ("error_rate != 0.1", .invalidCondition, "unsupported operator"),
            ("error_rate > 2.5", .invalidCondition, "fraction from 0 to 1"),
            ("single_key_traffic_percentage > 80", .invalidCondition, "fraction from 0 to 1"),
            ("error_rate > 0.1 extra", .invalidCondition, #"unexpected "extra""#),
            ("error_rate > 0.1%", .invalidCondition, #"unexpected "%" at position 17"#),
            ("error_rate > 1.2.3", .invalidCondition, #""1.2.3" is not a number"#),
            ("latency_avg_ms > 1e999", .invalidCondition, "finite"),
            ("requests > baseline * 2", .invalidCondition, "requests has no baseline"),
            ("avg_latency_ms > baseline * 0", .invalidCondition, "must be positive"),
            ("avg_latency_ms > 1.5 *", .invalidCondition, #"expected "baseline" after "*""#),
            ("avg_latency_ms > baseline *", .invalidCondition, "expected a number after"),
            ("avg_latency_ms > 1.5 * baseline * 2", .invalidCondition, "unexpected"),
        ] as [(String, AlertRuleError.Code, String)])
    func parseCondition_rejectsGarbage_sayingWhatAndWhere(text: String, code: AlertRuleError.Code, message: String) {
        do {
            let condition = try AlertEvaluator.parseCondition(text)
            Issue.record("parsed \(condition)")
        } catch {
            #expect(error.code == code)
            #expect(error.message.contains(message), "\(error.message)")
            #expect(error.field == "condition")
            #expect(error.text == text)
            #expect(error.rule == nil)
            #expect(error.description.hasPrefix(#"condition "\#(text)": "#))
        }
    }

    @Test(arguments: [
        (AlertEvaluator.Comparison.greater, [false, false, true]),
        (.greaterOrEqual, [false, true, true]),
        (.less, [true, false, false]),
        (.lessOrEqual, [true, true, false]),
        (.equal, [false, true, false]),
    ])
    func conditionHolds_comparesTheValueWithTheThreshold(comparison: AlertEvaluator.Comparison, expected: [Bool]) {
        // Values just below, at and just above the threshold 0.5, or 2 × a baseline of 0.25.
        let absolute = Condition(metric: .errorRate, comparison: comparison, threshold: 0.5)
        let relative = Condition(metric: .errorRate, comparison: comparison, threshold: 2, relativeToBaseline: true)
        #expect([0.4, 0.5, 0.6].map { absolute.holds(value: $0, baseline: nil) } == expected)
        #expect([0.4, 0.5, 0.6].map { relative.holds(value: $0, baseline: 0.25) } == expected)
        #expect(relative.holds(value: 0.6, baseline: nil) == nil, "no baseline, no verdict")
        #expect(absolute.holds(value: nil, baseline: 1) == nil, "no value, no verdict")
    }

    // MARK: Rules

    @Test func rule_seedExamples_compileWithTheirActions() throws {
        let seed = [
            ("High Error Rate - Model Key", "error_rate > 0.025", "model_key_id", "reduce_weight"),
            ("Latency Spike - Model Key", "avg_latency_ms > baseline * 1.5", "model_key_id", "temporary_circuit_break"),
            ("Traffic Imbalance - Provider", "single_key_traffic_percentage > 0.8", "provider", "rebalance_weights"),
        ]
        let rules = try seed.map { try AlertEvaluator.Rule(name: $0.0, condition: $0.1, scope: $0.2, action: $0.3) }
        #expect(
            rules.map(\.condition)
                == [AlertEvaluator.Rule.highErrorRate, .highLatency, .trafficImbalance].map(\.condition))
        #expect(rules.map(\.scope) == [.modelKey, .modelKey, .provider])
        #expect(rules.map(\.action) == [.reduceWeight, .temporaryCircuitBreak, .rebalanceWeights])
        let notify = try AlertEvaluator.Rule(name: "n", condition: "nodes_failed > 0", scope: "CLUSTER", action: "")
        #expect(notify.action == .notify)
        #expect(notify.scope == .cluster)
    }

    @Test(
        arguments: [
            ("region", "error_rate > 0.1", "notify", AlertRuleError.Code.unknownScope, "scope"),
            ("model_key", "single_key_traffic_percentage > 0.8", "notify", .metricNotInScope, "condition"),
            ("node", "error_rate > 0.1", "notify", .metricNotInScope, "condition"),
            ("model_key", "error_rate > 0.1", "page_someone", .unknownAction, "action"),
            ("provider", "error_rate > 0.1", "reduce_weight", .actionNotInScope, "action"),
            ("model_key", "traffic_share > 0.5", "rebalance_weights", .actionNotInScope, "action"),
            ("model_key", "error_rate > 25%", "reduce_weight", .invalidCondition, "condition"),
        ] as [(String, String, String, AlertRuleError.Code, String)])
    func rule_thatDoesNotFit_isRejectedNamingTheRuleAndField(
        scope: String, condition: String, action: String, code: AlertRuleError.Code, field: String
    ) {
        do {
            let rule = try AlertEvaluator.Rule(name: "my rule", condition: condition, scope: scope, action: action)
            Issue.record("accepted \(rule)")
        } catch {
            #expect(error.code == code)
            #expect(error.field == field)
            #expect(error.rule == "my rule")
            #expect(error.description.hasPrefix(#"alert rule "my rule": \#(field) ""#), "\(error)")
        }
    }

    // MARK: Evaluation

    enum Sample: Sendable, CustomStringConvertible {
        /// The subject with this value.
        case value(Double)
        /// The subject present, the value unknown (too few samples).
        case unknown
        /// The subject missing from the snapshot.
        case absent

        var description: String {
            switch self {
            case .value(let v): "\(v)"
            case .unknown: "?"
            case .absent: "-"
            }
        }
    }

    static let t0: UInt64 = 1_700_000_000_000

    static func snapshot(
        _ sample: Sample, metric: AlertEvaluator.Metric = .errorRate, subject: String = "k1"
    )
        -> AlertEvaluator.Snapshot
    {
        var s = AlertEvaluator.Snapshot()
        switch sample {
        case .value(let v): s.set(metric, v, .modelKey, subject)
        case .unknown: s.set(metric, nil, .modelKey, subject)
        case .absent: break
        }
        return s
    }

    /// Feeds one sample a minute; returns (index, firing) of each transition.
    static func run(_ samples: [Sample], clearAfter: Int, rule: AlertEvaluator.Rule = .highErrorRate) -> [Transition] {
        var settings = AlertEvaluator.Settings()
        settings.clearAfterEvaluations = clearAfter
        var evaluator = AlertEvaluator(rules: [rule], settings: settings)
        var out: [Transition] = []
        for (i, sample) in samples.enumerated() {
            for t in evaluator.evaluate(Self.snapshot(sample), nowMillis: t0 + UInt64(i) * 60_000) {
                out.append(Transition(at: i, firing: t.firing))
            }
        }
        return out
    }

    struct Transition: Equatable, Sendable, CustomStringConvertible {
        var at: Int
        var firing: Bool
        var description: String { "\(firing ? "fire" : "clear")@\(at)" }
    }

    struct HysteresisCase: Sendable, CustomTestStringConvertible {
        var clearAfter: Int
        var samples: [Sample]
        var expected: [Transition]
        var testDescription: String { "clear after \(clearAfter): \(samples)" }
    }

    static let wobbly: [Sample] = [
        .value(0.03), .value(0.04), .value(0.01), .value(0.03), .value(0.01), .value(0.01), .value(0.01),
    ]

    @Test(arguments: [
        HysteresisCase(
            clearAfter: 1, samples: AlertRulesTests.wobbly,
            expected: [
                .init(at: 0, firing: true), .init(at: 2, firing: false), .init(at: 3, firing: true),
                .init(at: 4, firing: false),
            ]),
        HysteresisCase(
            clearAfter: 2, samples: AlertRulesTests.wobbly,
            expected: [.init(at: 0, firing: true), .init(at: 5, firing: false)]),
        HysteresisCase(
            clearAfter: 3, samples: AlertRulesTests.wobbly,
            expected: [.init(at: 0, firing: true), .init(at: 6, firing: false)]),
        // Oscillating around the threshold: fires once and stays firing.
        HysteresisCase(
            clearAfter: 2, samples: (0..<20).map { .value($0 % 2 == 0 ? 0.03 : 0.02) },
            expected: [.init(at: 0, firing: true)]),
        // Exactly at the threshold does not hold (">").
        HysteresisCase(clearAfter: 2, samples: [.value(0.025), .value(0.025)], expected: []),
        // Unknown values are no evidence either way: the clear streak neither grows nor resets.
        HysteresisCase(
            clearAfter: 2, samples: [.value(0.03), .unknown, .value(0.01), .unknown, .unknown, .value(0.01)],
            expected: [.init(at: 0, firing: true), .init(at: 5, firing: false)]),
        // A subject gone from the snapshot counts as not holding.
        HysteresisCase(
            clearAfter: 2, samples: [.value(0.03), .absent, .absent, .absent],
            expected: [.init(at: 0, firing: true), .init(at: 2, firing: false)]),
        HysteresisCase(clearAfter: 2, samples: [.unknown, .absent, .value(0.01)], expected: []),
    ])
    func evaluate_firesAtOnce_andClearsAfterTheClearCount(_ c: HysteresisCase) {
        #expect(Self.run(c.samples, clearAfter: c.clearAfter) == c.expected)
    }

    @Test func evaluate_transitions_carryValueActionAndDetail() {
        var evaluator = AlertEvaluator(rules: [.highErrorRate])
        let fired = evaluator.evaluate(Self.snapshot(.value(0.04)), nowMillis: Self.t0)
        #expect(
            fired == [
                AlertFired(
                    rule: "high_error_rate", scope: "k1", firing: true, value: 0.04, action: "reduce_weight",
                    detail: "error_rate 0.04 > 0.025")
            ])
        #expect(evaluator.firing == [AlertKey(rule: "high_error_rate", scope: "k1")])
        #expect(evaluator.evaluate(Self.snapshot(.value(0.01)), nowMillis: Self.t0 + 60_000).isEmpty)
        let cleared = evaluator.evaluate(Self.snapshot(.value(0.02)), nowMillis: Self.t0 + 120_000)
        #expect(
            cleared == [
                AlertFired(
                    rule: "high_error_rate", scope: "k1", firing: false, value: 0.02, action: "reduce_weight",
                    detail: "error_rate 0.02 no longer > 0.025; cleared after 120 s")
            ])
        #expect(cleared.first?.firing == false)
        #expect(evaluator.firing.isEmpty)
    }

    @Test(
        arguments: [
            (160.0, 100.0 as Double?, true), (150.0, 100.0, false), (1_000.0, nil, false), (140.0, 90.0, true),
        ] as [(Double, Double?, Bool)])
    func evaluate_relativeCondition_comparesWithTheSubjectsBaseline(value: Double, baseline: Double?, fires: Bool) {
        var evaluator = AlertEvaluator(rules: [.highLatency])
        var snapshot = AlertEvaluator.Snapshot()
        snapshot.set(.latencyAvgMillis, value, .modelKey, "k1")
        snapshot.setBaseline(.latencyAvgMillis, baseline, .modelKey, "k1")
        let transitions = evaluator.evaluate(snapshot, nowMillis: Self.t0)
        #expect(transitions.map(\.firing) == (fires ? [true] : []))
        if fires {
            #expect(transitions.first?.detail.hasSuffix("× baseline \(AlertEvaluator.format(baseline!))") == true)
        }
    }

    @Test func evaluate_takingOver_clearsWhatAnEarlierEvaluatorFired() {
        let key = AlertKey(rule: "high_error_rate", scope: "k1")
        var evaluator = AlertEvaluator(rules: [.highErrorRate])
        #expect(evaluator.evaluate(Self.snapshot(.value(0.01)), nowMillis: Self.t0, firingAlerts: [key]).isEmpty)
        let cleared = evaluator.evaluate(Self.snapshot(.value(0.01)), nowMillis: Self.t0 + 60_000, firingAlerts: [key])
        #expect(cleared.map(\.firing) == [false])
        #expect(cleared.first?.detail == "error_rate 0.01 no longer > 0.025; cleared")
        // Still holding when taken over: no second "fired".
        var other = AlertEvaluator(rules: [.highErrorRate])
        #expect(other.evaluate(Self.snapshot(.value(0.05)), nowMillis: Self.t0, firingAlerts: [key]).isEmpty)
        #expect(other.firing == [key])
    }

    @Test func evaluate_subjectsAreIndependent_andReportedInOrder() {
        var evaluator = AlertEvaluator(rules: [.highErrorRate, .providerDegradation])
        var snapshot = AlertEvaluator.Snapshot()
        snapshot.set(.errorRate, 0.05, .modelKey, "k2")
        snapshot.set(.errorRate, 0.01, .modelKey, "k3")
        snapshot.set(.errorRate, 0.05, .modelKey, "k1")
        snapshot.set(.errorRate, 0.03, .provider, "openai")
        let fired = evaluator.evaluate(snapshot, nowMillis: Self.t0)
        #expect(
            fired.map { "\($0.rule)/\($0.scope)" } == [
                "high_error_rate/k1", "high_error_rate/k2", "provider_degradation/openai",
            ])
        #expect(fired.map(\.action) == ["reduce_weight", "reduce_weight", "notify"])
    }
}
