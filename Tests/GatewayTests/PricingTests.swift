import EventLog
import Foundation
import Testing

@testable import Gateway

@Suite struct PricingTests {
    static func price(
        _ input: Double, _ output: Double, cacheRead: Double? = nil, cacheWrite: Double? = nil
    )
        -> ModelPrice
    {
        ModelPrice(
            base: .init(
                input: ModelPrice.picoUSD(perToken: input), output: ModelPrice.picoUSD(perToken: output),
                cacheRead: cacheRead.flatMap(ModelPrice.picoUSD(perToken:)),
                cacheWrite: cacheWrite.flatMap(ModelPrice.picoUSD(perToken:))))
    }

    @Test func openAICachedAndReasoningTokensAreBilledOnce() throws {
        let body = #"""
            {"usage": {"prompt_tokens": 2000, "completion_tokens": 500, "total_tokens": 2500,
                       "prompt_tokens_details": {"cached_tokens": 1500},
                       "completion_tokens_details": {"reasoning_tokens": 300}}}
            """#
        let usage = Usage(response: try JSONValue(parsing: Array(body.utf8)), api: .openAI)
        #expect(usage == Usage(input: 2000, output: 500, cacheRead: 1500, reasoning: 300))
        #expect(usage.uncachedInput == 500)
        #expect(usage.visibleOutput == 200)
        // gpt-4o-mini: $0.15 / $0.60 per 1M, cached input $0.075 per 1M.
        let p = Self.price(1.5e-7, 6e-7, cacheRead: 7.5e-8)
        // 500 × 0.15 + 1500 × 0.075 + 500 × 0.6 (reasoning at the output rate) = 487.5 pico·1e6
        #expect(p.picoUSD(usage) == 500 * 150_000 + 1500 * 75_000 + 500 * 600_000)
        #expect(p.microUSD(usage) == 488)
        // Billed as plain input, the cached tokens would have cost more.
        #expect(p.microUSD(Usage(input: 2000, output: 500)) == 600)
    }

    @Test func reasoningHasItsOwnRateWhenTheTableGivesOne() {
        var p = Self.price(1e-6, 4e-6)
        p.base.reasoning = ModelPrice.picoUSD(perToken: 8e-6)
        let usage = Usage(input: 0, output: 1000, reasoning: 250)
        #expect(p.picoUSD(usage) == 750 * 4_000_000 + 250 * 8_000_000)
    }

    @Test func anthropicCacheClassesAreCountedOnceEach() throws {
        let body = #"""
            {"usage": {"input_tokens": 100, "cache_creation_input_tokens": 2000,
                       "cache_read_input_tokens": 8000, "output_tokens": 400}}
            """#
        let usage = Usage(response: try JSONValue(parsing: Array(body.utf8)), api: .anthropic)
        #expect(usage.input == 10_100)
        #expect(usage.uncachedInput == 100)
        #expect(usage.cacheWrite == 2000)
        #expect(usage.cacheRead == 8000)
        // claude-sonnet-4-5: $3 in, $15 out, cache writes $3.75, cache reads $0.30 per 1M.
        let p = Self.price(3e-6, 1.5e-5, cacheRead: 3e-7, cacheWrite: 3.75e-6)
        let expected: UInt64 = 100 * 3_000_000 + 2000 * 3_750_000 + 8000 * 300_000 + 400 * 15_000_000
        #expect(p.picoUSD(usage) == expected)
        #expect(p.microUSD(usage) == 16_200)
        // The translated usage carries the same classes both ways.
        #expect(Usage(anthropic: usage.anthropicJSON) == usage)
        let openAI = Usage(openAI: usage.openAIJSON)
        #expect(openAI.input == usage.input && openAI.cacheRead == usage.cacheRead)
    }

    @Test func aStreamDeltaRestatingTheInputKeepsTheCacheClasses() {
        var usage = Usage(
            anthropic: .object([
                "input_tokens": .int(10), "cache_read_input_tokens": .int(90), "output_tokens": .int(1),
            ]))
        usage.absorb(anthropicDelta: .object(["output_tokens": .int(42)]))
        #expect(usage == Usage(input: 100, output: 42, cacheRead: 90))
        usage.absorb(
            anthropicDelta: .object([
                "input_tokens": .int(10), "cache_read_input_tokens": .int(90), "cache_creation_input_tokens": .int(5),
                "output_tokens": .int(50),
            ]))
        #expect(usage == Usage(input: 105, output: 50, cacheRead: 90, cacheWrite: 5))
    }

    @Test func tieredPricesApplyAboveTheirThreshold() throws {
        let sheet = try PriceSheet(
            json: Array(
                #"""
                {"m": {"input_cost_per_token": 3e-6, "output_cost_per_token": 1.5e-5,
                       "input_cost_per_token_above_200k_tokens": 6e-6,
                       "output_cost_per_token_above_200k_tokens": 2.25e-5}}
                """#.utf8), strict: true, path: "pricing.models")
        let p = try #require(sheet.price(for: "m"))
        #expect(p.tiers.keys.sorted() == [200_000])
        #expect(p.picoUSD(Usage(input: 200_000, output: 10)) == 200_000 * 3_000_000 + 10 * 15_000_000)
        #expect(p.picoUSD(Usage(input: 200_001, output: 10)) == 200_001 * 6_000_000 + 10 * 22_500_000)
    }

    @Test func microUSDRoundsHalfUp() {
        #expect(ModelPrice.microUSD(picoUSD: 499_999) == 0)
        #expect(ModelPrice.microUSD(picoUSD: 500_000) == 1)
        #expect(ModelPrice.microUSD(picoUSD: 1_499_999) == 1)
        #expect(ModelPrice.microUSD(picoUSD: 1_500_000) == 2)
        #expect(ModelPrice.picoUSD(perToken: 1.5e-7) == 150_000)
        #expect(ModelPrice.picoUSD(perToken: 2e-8) == 20_000)
        #expect(ModelPrice.picoUSD(perToken: -1) == nil)
        #expect(ModelPrice.picoUSD(perToken: .nan) == nil)
    }

    @Test func theShippedTableCoversTheCurrentModels() throws {
        let shipped = PriceSheet.shipped
        for model in [
            "gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-5", "o3-mini", "text-embedding-3-small", "claude-sonnet-4-5",
            "claude-opus-4-5", "claude-haiku-4-5",
        ] {
            let p = try #require(shipped.price(for: model), "\(model) is not in the shipped table")
            #expect(p.isComplete, "\(model)")
        }
        let mini = try #require(shipped.price(for: "openai/gpt-4o-mini"))
        #expect(mini.base.input == 150_000 && mini.base.output == 600_000 && mini.base.cacheRead == 75_000)
        #expect(shipped.price(for: "sample_spec") == nil)
    }

    static func config(_ extra: String, keyPricing: String = "") throws -> BifrostConfig {
        try BifrostConfig.parse(
            Array(
                """
                {"providers": {"openai": {"keys": [
                   {"name": "k1", "value": "sk-1", "models": ["gpt-4o-mini", "in-house-model"]\(keyPricing)},
                   {"name": "k2", "value": "sk-2", "models": ["gpt-4o-mini"]}]}}\(extra)}
                """.utf8))
    }

    @Test func overridesApplyFieldByFieldAndUnknownModelsAreUnpriced() throws {
        let config = try Self.config(
            #", "pricing": {"models": {"gpt-4o-mini": {"output_cost_per_token": 1e-6}}}"#,
            keyPricing: #", "pricing": {"models": {"gpt-4o-mini": {"input_cost_per_token": 1e-7}}}"#)
        let book = PriceBook(catalog: Catalog(config.providers), pricing: config.pricing)
        let k1 = try #require(book.price(keyID: "k1", model: "gpt-4o-mini"))
        let k2 = try #require(book.price(keyID: "k2", model: "gpt-4o-mini"))
        #expect(k1.base.input == 100_000 && k1.base.output == 1_000_000 && k1.base.cacheRead == 75_000)
        #expect(k2.base.input == 150_000 && k2.base.output == 1_000_000)
        #expect(book.price(keyID: "k1", model: "in-house-model") == nil)
        #expect(book.unpriced.map { "\($0.keyID)/\($0.model)" } == ["k1/in-house-model"])
        #expect(book.microUSD(Usage(input: 1000, output: 1000), keyID: "k1", model: "in-house-model") == nil)
        #expect(book.version.hasPrefix(ShippedPrices.takenOn + "."))
        let other = PriceBook(catalog: Catalog(try Self.config("").providers), pricing: .init())
        #expect(other.version != book.version)
    }

    @Test func aPriceFileInLiteLLMsShapeIsReadAndItsOtherFieldsIgnored() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("prices-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: file) }
        try Data(
            #"""
            {"sample_spec": {"input_cost_per_token": 0.0, "mode": "chat"},
             "in-house-model": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6,
                                "litellm_provider": "openai", "max_tokens": 8192, "supports_vision": true,
                                "input_cost_per_token_batches": 5e-7}}
            """#.utf8
        ).write(to: file)
        let config = try Self.config(#", "pricing": {"file": "\#(file.path)"}"#)
        let book = PriceBook(catalog: Catalog(config.providers), pricing: config.pricing)
        #expect(book.unpriced.isEmpty)
        #expect(book.price(keyID: "k1", model: "in-house-model")?.base == .init(input: 1_000_000, output: 2_000_000))
    }

    @Test func badPricingIsRefusedNamingTheField() {
        func problem(_ extra: String) -> String? {
            do {
                _ = try Self.config(extra)
                return nil
            } catch {
                return (error as? ConfigError)?.description ?? "\(error)"
            }
        }
        #expect(
            problem(#", "pricing": {"models": {"m": {"input_cost_per_token": "cheap"}}}"#)?
                .hasPrefix("pricing.models.m.input_cost_per_token: expected USD per token") == true)
        #expect(
            problem(#", "pricing": {"models": {"m": {"input_cost_per_token_batches": 1e-7}}}"#)?
                .hasPrefix("pricing.models.m.input_cost_per_token_batches: not a token price") == true)
        #expect(
            problem(#", "pricing": {"file": "/nonexistent/prices.json"}"#)?.hasPrefix("pricing.file: cannot read")
                == true)
        #expect(problem(#", "pricing": {"currency": "EUR"}"#)?.hasPrefix("pricing.currency") == true)
    }

    @Test func usageEventsCarryTheClassesAndTheCostAndOldEventsStillDecode() throws {
        var usage = UsageRecorded(
            requestID: "", keyID: "k1", model: "gpt-4o-mini", limitKeys: ["vk:team-a"], windowStartMillis: 60_000,
            windowMillis: 60_000, tokensIn: 2000, tokensOut: 500, latencyMicros: 1234, status: 200, outcome: .success,
            cacheReadTokens: 1500, cacheWriteTokens: 0, reasoningTokens: 300, costMicros: 488,
            priceVersion: "2026-12-02.abcdef")
        let id = EventID(hlc: HLCTimestamp(wallMillis: 1_000, logical: 0), origin: NodeID(rawValue: 7))
        let bytes = EventCodec.encode(Event(id: id, payload: .usageRecorded(usage)))
        #expect(try EventCodec.decode(bytes).payload == .usageRecorded(usage))
        usage.costMicros = nil
        usage.priceVersion = ""
        let unpriced = EventCodec.encode(Event(id: id, payload: .usageRecorded(usage)))
        #expect(try EventCodec.decode(unpriced).payload == .usageRecorded(usage))
        // Schema 1 ended at the outcome byte; schema 2 appends 5 bytes when every new field is empty.
        usage.cacheReadTokens = 0
        usage.reasoningTokens = 0
        let empty = EventCodec.encode(Event(id: id, payload: .usageRecorded(usage)))
        let schema1 = Array(empty.prefix(empty.count - 5))
        guard case .usageRecorded(let old) = try EventCodec.decode(schema1).payload else {
            Issue.record("not a usage event")
            return
        }
        #expect(old.tokensIn == 2000 && old.costMicros == nil && old.cacheReadTokens == 0)
    }
}
