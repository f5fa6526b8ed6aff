import Testing

@testable import Gateway

/// nginx's smooth weighted round robin over `Double` weights.
@Suite struct WeightedRoundRobinTests {
    static func picks(_ wrr: inout SmoothWeightedRoundRobin, _ n: Int, among eligible: [String]) -> [String] {
        (0..<n).map { _ in wrr.next(among: eligible)! }
    }

    static func counts(_ picks: [String]) -> [String: Int] {
        picks.reduce(into: [:]) { $0[$1, default: 0] += 1 }
    }

    struct SequenceCase: Sendable, CustomTestStringConvertible {
        var weights: [String: Double]
        var expected: [String]
        var testDescription: String { "\(weights.sorted { $0.key < $1.key })" }
    }

    @Test(arguments: [
        // nginx's own example: {a:5, b:1, c:1} → a a b a c a a.
        SequenceCase(weights: ["a": 5, "b": 1, "c": 1], expected: ["a", "a", "b", "a", "c", "a", "a"]),
        SequenceCase(weights: ["a": 1, "b": 1], expected: ["a", "b"]),
        SequenceCase(weights: ["a": 2, "b": 1], expected: ["a", "b", "a"]),
        SequenceCase(weights: ["a": 0.5, "b": 0.25, "c": 0.25], expected: ["a", "b", "c", "a"]),
    ])
    func next_overOneCycle_followsTheSmoothSequence_andRepeats(_ c: SequenceCase) {
        var wrr = SmoothWeightedRoundRobin(weights: c.weights)
        let ids = c.weights.keys.sorted()
        #expect(Self.picks(&wrr, c.expected.count, among: ids) == c.expected)
        #expect(Self.picks(&wrr, c.expected.count, among: ids) == c.expected, "the second cycle is the same")
    }

    @Test func next_doesNotDependOnTheOrderOfEligible() {
        var forward = SmoothWeightedRoundRobin(weights: ["a": 5, "b": 1, "c": 1])
        var backward = forward
        #expect(
            Self.picks(&forward, 70, among: ["a", "b", "c"]) == Self.picks(&backward, 70, among: ["c", "b", "a"]))
    }

    struct ShareCase: Sendable, CustomTestStringConvertible {
        var weights: [String: Double]
        var picks: Int
        var testDescription: String { "\(weights.sorted { $0.key < $1.key }) over \(picks)" }
    }

    @Test(arguments: [
        ShareCase(weights: ["a": 0.005, "b": 1], picks: 2_010),
        ShareCase(weights: ["a": 0.8, "b": 0.195, "c": 0.005], picks: 1_000),
        ShareCase(weights: ["a": 0.8, "b": 0.195, "c": 0.005], picks: 10_001),
        ShareCase(weights: ["a": 3, "b": 7], picks: 997),
    ])
    func next_overManyPicks_matchesTheWeightsWithinOnePick(_ c: ShareCase) {
        var wrr = SmoothWeightedRoundRobin(weights: c.weights)
        let counts = Self.counts(Self.picks(&wrr, c.picks, among: c.weights.keys.sorted()))
        let total = c.weights.values.reduce(0, +)
        for (id, w) in c.weights {
            let expected = Double(c.picks) * w / total
            let got = Double(counts[id] ?? 0)
            #expect(abs(got - expected) <= 1, "\(id): \(got) picks, expected \(expected)")
        }
    }

    @Test func next_tinyWeight_isInterleaved_notStarved() {
        // 0.005 beside 1 gets one pick in every 201, not none and not a burst.
        var wrr = SmoothWeightedRoundRobin(weights: ["tiny": 0.005, "big": 1])
        let picks = Self.picks(&wrr, 2_010, among: ["big", "tiny"])
        let positions = picks.indices.filter { picks[$0] == "tiny" }
        #expect(positions.count == 10)
        for (a, b) in zip(positions, positions.dropFirst()) {
            #expect(b - a == 201, "tiny picked at \(a) then \(b)")
        }
    }

    @Test func next_skipsIneligible_andTheRestKeepTheirShares() {
        var wrr = SmoothWeightedRoundRobin(weights: ["a": 2, "b": 5, "c": 1])
        // b's breaker is open for a while: a and c share 2:1 among themselves.
        let without = Self.picks(&wrr, 300, among: ["a", "c"])
        #expect(Self.counts(without) == ["a": 200, "c": 100])
        // b back: over whole cycles of 8 the split is 2:5:1 again.
        let with = Self.picks(&wrr, 800, among: ["a", "b", "c"])
        let counts = Self.counts(with)
        #expect(abs(counts["a"]! - 200) <= 1)
        #expect(abs(counts["b"]! - 500) <= 1)
        #expect(abs(counts["c"]! - 100) <= 1)
    }

    @Test func next_excludedCandidate_keepsItsPlace() {
        // a:1 b:1 alternate a b a b …; with b out for a few picks, b is next once it returns.
        var wrr = SmoothWeightedRoundRobin(weights: ["a": 1, "b": 1])
        #expect(wrr.next(among: ["a", "b"]) == "a")
        #expect(Self.picks(&wrr, 3, among: ["a"]) == ["a", "a", "a"])
        #expect(Self.picks(&wrr, 4, among: ["a", "b"]) == ["b", "a", "b", "a"])
    }

    @Test func next_withNothingEligible_isNil() {
        var wrr = SmoothWeightedRoundRobin(weights: ["a": 1])
        #expect(wrr.next(among: [String]()) == nil)
    }

    @Test func next_zeroWeightBesideWeighted_isNeverPicked() {
        var wrr = SmoothWeightedRoundRobin(weights: ["a": 1, "b": 0, "c": 2])
        let counts = Self.counts(Self.picks(&wrr, 300, among: ["a", "b", "c", "unknown"]))
        #expect(counts == ["a": 100, "c": 200])
    }

    @Test func next_onlyZeroWeights_rotatesEvenlyAmongEligible() {
        var wrr = SmoothWeightedRoundRobin(weights: ["a": 0, "b": 0, "c": 0])
        let picks = Self.picks(&wrr, 9, among: ["c", "a", "b"])
        #expect(Self.counts(picks) == ["a": 3, "b": 3, "c": 3])
        for (x, y) in zip(picks, picks.dropFirst()) { #expect(x != y) }
        // An id without any weight counts as 0 and is still served when it is all there is.
        #expect(wrr.next(among: ["unknown"]) == "unknown")
    }

    @Test(arguments: [
        (-1.0, 0.0), (Double.nan, 0.0), (Double.infinity, 0.0), (-Double.infinity, 0.0), (0.25, 0.25),
    ])
    func setWeights_negativeOrNonFinite_countAsZero(weight: Double, expected: Double) {
        let wrr = SmoothWeightedRoundRobin(weights: ["a": weight])
        #expect(wrr.weight(of: "a") == expected)
        #expect(wrr.weight(of: "missing") == 0)
    }

    @Test func setWeights_keepsTheRotationOfRemainingIds() {
        let weights: [String: Double] = ["a": 5, "b": 1, "c": 1]
        var wrr = SmoothWeightedRoundRobin(weights: weights)
        #expect(Self.picks(&wrr, 3, among: ["a", "b", "c"]) == ["a", "a", "b"])
        wrr.setWeights(weights)
        #expect(Self.picks(&wrr, 4, among: ["a", "b", "c"]) == ["a", "c", "a", "a"], "not restarted")
    }
}
