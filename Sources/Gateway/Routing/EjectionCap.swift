/// How many of a model's keys may be broken at once (Envoy's `max_ejection_percent`): at most
/// `maxFraction` of them, and never the last one that is not. One rule for the weight
/// controller's temporary breaks and for each node's own breakers.
enum EjectionCap {
    /// Whether a group of `groupSize` keys may have `brokenAfter` of them broken.
    static func allows(brokenAfter: Int, groupSize: Int, maxFraction: Double) -> Bool {
        let cap = Int((Double(groupSize) * maxFraction + 1e-9).rounded(.down))
        return brokenAfter <= cap && brokenAfter < groupSize
    }
}
