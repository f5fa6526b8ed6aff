/// nginx's smooth weighted round robin, over `Double` weights.
///
/// Each pick adds every eligible candidate's weight to its current value, takes the greatest,
/// and subtracts the eligible total from it. Over any run the picks follow the weights exactly
/// (up to one pick), interleaved rather than in bursts, and a weight of 0.005 beside 0.8 gets its
/// 0.6 %: weights are never rounded to integers. Candidates left out of a pick (breaker open,
/// key bad for this request) keep their current value, so the others' shares are undisturbed.
public struct SmoothWeightedRoundRobin: Sendable {
    private var weights: [String: Double] = [:]
    private var current: [String: Double] = [:]
    /// Rotation among zero-weight candidates when nothing eligible has a weight.
    private var fallbackIndex = 0

    public init() {}

    public init(weights: [String: Double]) { setWeights(weights) }

    /// Sets the weights; ids that remain keep their place in the rotation.
    public mutating func setWeights(_ weights: [String: Double]) {
        self.weights = weights.mapValues { $0.isFinite ? Swift.max(0, $0) : 0 }
        current = current.filter { weights[$0.key] != nil }
    }

    public func weight(of id: String) -> Double { weights[id] ?? 0 }

    /// The next candidate among `eligible` (ids without a weight count as 0), or nil when
    /// `eligible` is empty.
    public mutating func next(among eligible: some Collection<String>) -> String? {
        guard !eligible.isEmpty else { return nil }
        var total = 0.0
        var best: String?
        var bestValue = -Double.infinity
        for id in eligible {
            let w = weights[id] ?? 0
            guard w > 0 else { continue }
            total += w
            let value = current[id, default: 0] + w
            current[id] = value
            // Ties go to the smaller id, so the sequence does not depend on iteration order.
            if value > bestValue || (value == bestValue && id < best!) {
                best = id
                bestValue = value
            }
        }
        guard let best else {
            let sorted = eligible.sorted()
            fallbackIndex = (fallbackIndex + 1) % sorted.count
            return sorted[fallbackIndex]
        }
        current[best]! -= total
        return best
    }
}
