import EventLog
import Foundation

/// Realistic synthetic events for benchmarks, demos and tests: the traffic of a gateway with a
/// few virtual keys, provider keys and models, plus the rarer control-plane kinds.
public struct SyntheticEvents {
    public var rng: SplitMix64
    public let virtualKeys = ["vk:team-a", "vk:team-b", "vk:team-c", "vk:batch"]
    public let providerKeys = [
        ("openai", "gpt-4-key-1", "gpt-4o-mini"), ("openai", "gpt-4-key-2", "gpt-4o-mini"),
        ("anthropic", "claude-3-key-1", "claude-3-5-sonnet"), ("anthropic", "claude-3-key-2", "claude-3-5-sonnet"),
    ]
    public let windowMillis: UInt32 = 60_000
    private var requestCounter: UInt64 = 0

    public init(seed: UInt64) { rng = SplitMix64(seed: seed) }

    /// One payload; `nowMillis` places it in the current limit window.
    public mutating func payload(nowMillis: UInt64) -> Event.Payload {
        let roll = Int.random(in: 0..<1000, using: &rng)
        let (provider, key, model) = providerKeys.randomElement(using: &rng)!
        let vk = virtualKeys.randomElement(using: &rng)!
        let windowStart = nowMillis / UInt64(windowMillis) * UInt64(windowMillis)
        let limitKeys = [vk, "pk:\(key)", "pm:\(provider)/\(model)"]
        switch roll {
        case 0..<590:
            return .rateLimitIncrement(
                RateLimitIncrement(keys: limitKeys, windowStartMillis: windowStart, windowMillis: windowMillis))
        case 590..<990:
            requestCounter += 1
            let failed = Int.random(in: 0..<100, using: &rng) < 2
            return .usageRecorded(
                UsageRecorded(
                    requestID: "req-\(requestCounter)", keyID: key, model: model, limitKeys: limitKeys,
                    windowStartMillis: windowStart, windowMillis: windowMillis,
                    tokensIn: UInt32.random(in: 20...2000, using: &rng),
                    tokensOut: UInt32.random(in: 5...800, using: &rng),
                    latencyMicros: UInt32.random(in: 200_000...2_500_000, using: &rng), status: failed ? 502 : 200,
                    outcome: failed ? .upstreamError : .success))
        case 990..<995:
            let w = Double(Int.random(in: 1...100, using: &rng)) / 100
            return .weightChanged(
                WeightChanged(keyID: key, oldWeight: 1, newWeight: w, reason: "error_rate", actor: "controller:bench"))
        case 995..<997:
            let node = "bifrost-node-\(Int.random(in: 1...3, using: &rng))"
            return .membershipChanged(
                MembershipChanged(
                    node: node, state: MemberState.allCases.randomElement(using: &rng)!,
                    incarnation: UInt64.random(in: 0...10, using: &rng), observer: "bifrost-node-1",
                    address: "127.0.0.1:8080"))
        case 997..<999:
            return .alertFired(
                AlertFired(
                    rule: "High Error Rate - Model Key", scope: key, firing: Bool.random(using: &rng),
                    value: Double.random(in: 0...0.1, using: &rng), action: "reduce_weight"))
        default:
            let doc =
                #"{"providers":{"openai":{"keys":[{"name":"\#(key)","value":"env.OPENAI_API_KEY","weight":0.8}]}}}"#
            return .configUpdated(ConfigUpdated(document: Array(doc.utf8), author: "operator"))
        }
    }

    /// A counter or usage payload only (the hot path's kinds).
    public mutating func counterPayload(nowMillis: UInt64) -> Event.Payload {
        while true {
            let p = payload(nowMillis: nowMillis)
            if p.kind?.isCompactable == true { return p }
        }
    }
}
