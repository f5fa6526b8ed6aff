/// What one model costs per token, in pico-USD (10⁻¹² USD) so that every published price is an
/// integer and a request's cost is an exact sum; the field names follow LiteLLM's
/// `model_prices_and_context_window.json`.
///
/// A class without its own price is charged as the class it belongs to: cache reads and cache
/// writes as input, reasoning as output, as the providers bill them.
public struct ModelPrice: Sendable, Equatable {
    /// The per-token prices of one tier, in pico-USD.
    public struct Rates: Sendable, Equatable {
        public var input: UInt64?
        public var output: UInt64?
        public var cacheRead: UInt64?
        public var cacheWrite: UInt64?
        public var reasoning: UInt64?

        public init(
            input: UInt64? = nil, output: UInt64? = nil, cacheRead: UInt64? = nil, cacheWrite: UInt64? = nil,
            reasoning: UInt64? = nil
        ) {
            self.input = input
            self.output = output
            self.cacheRead = cacheRead
            self.cacheWrite = cacheWrite
            self.reasoning = reasoning
        }

        /// Field by field: a rate `other` sets replaces this one.
        func overridden(by other: Rates) -> Rates {
            Rates(
                input: other.input ?? input, output: other.output ?? output, cacheRead: other.cacheRead ?? cacheRead,
                cacheWrite: other.cacheWrite ?? cacheWrite, reasoning: other.reasoning ?? reasoning)
        }

        var isEmpty: Bool { self == Rates() }
    }

    /// Rates below every tier.
    public var base: Rates
    /// Rates for requests whose input exceeds a number of tokens (`*_above_200k_tokens`), by that
    /// number; a tier's missing rates are the base's.
    public var tiers: [Int: Rates]

    public init(base: Rates, tiers: [Int: Rates] = [:]) {
        self.base = base
        self.tiers = tiers
    }

    /// A price needs at least the input and output rates; anything less is unpriced.
    public var isComplete: Bool { base.input != nil && base.output != nil }

    /// Field by field, tier by tier: what `other` sets replaces this price's.
    public func overridden(by other: ModelPrice) -> ModelPrice {
        var tiers = self.tiers
        for (threshold, rates) in other.tiers { tiers[threshold] = (tiers[threshold] ?? Rates()).overridden(by: rates) }
        return ModelPrice(base: base.overridden(by: other.base), tiers: tiers)
    }

    /// The rates a request with `inputTokens` of input pays: the highest tier it exceeds, on top
    /// of the base.
    public func rates(inputTokens: Int) -> Rates {
        guard let threshold = tiers.keys.filter({ inputTokens > $0 }).max(), let tier = tiers[threshold] else {
            return base
        }
        return base.overridden(by: tier)
    }

    /// The cost of `usage` in pico-USD: each token class once, at its own rate.
    public func picoUSD(_ usage: Usage) -> UInt64 {
        let r = rates(inputTokens: usage.input)
        let input = r.input ?? 0
        let output = r.output ?? 0
        let parts: [(Int, UInt64)] = [
            (usage.uncachedInput, input),
            (usage.cacheRead, r.cacheRead ?? input),
            (usage.cacheWrite, r.cacheWrite ?? input),
            (usage.visibleOutput, output),
            (usage.reasoning, r.reasoning ?? output),
        ]
        var total: UInt64 = 0
        for (tokens, rate) in parts where tokens > 0 {
            let (product, overflow) = UInt64(tokens).multipliedReportingOverflow(by: rate)
            let (sum, overflowed) = total.addingReportingOverflow(product)
            if overflow || overflowed { return .max }
            total = sum
        }
        return total
    }

    /// The cost of `usage` in micro-USD, rounded half up: what events and budgets carry.
    public func microUSD(_ usage: Usage) -> UInt64 {
        Self.microUSD(picoUSD: picoUSD(usage))
    }

    static func microUSD(picoUSD: UInt64) -> UInt64 {
        picoUSD == .max ? .max / 1_000_000 : (picoUSD + 500_000) / 1_000_000
    }

    /// A price in USD per token as the JSON writes it (`1.5e-07`), in pico-USD; nil for what is
    /// not a finite, non-negative number below a dollar a token.
    public static func picoUSD(perToken usd: Double) -> UInt64? {
        guard usd.isFinite, usd >= 0, usd < 1 else { return nil }
        return UInt64((usd * 1e12).rounded())
    }
}
