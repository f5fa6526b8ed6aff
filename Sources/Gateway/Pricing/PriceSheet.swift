import EventLog

/// Model prices in LiteLLM's `model_prices_and_context_window.json` shape: a JSON object of model
/// name → entry, whose token-price fields are read and whose other fields (limits, modes,
/// capabilities) are ignored.
public struct PriceSheet: Sendable, Equatable {
    public var models: [String: ModelPrice]

    public init(models: [String: ModelPrice] = [:]) {
        self.models = models
    }

    /// The token-price fields, by the token class they price.
    static var fields: [(name: String, rate: WritableKeyPath<ModelPrice.Rates, UInt64?>)] {
        [
            ("input_cost_per_token", \.input),
            ("output_cost_per_token", \.output),
            ("cache_read_input_token_cost", \.cacheRead),
            ("cache_creation_input_token_cost", \.cacheWrite),
            ("output_cost_per_reasoning_token", \.reasoning),
        ]
    }

    /// The shipped table (`ShippedPrices`).
    public static let shipped: PriceSheet = {
        do {
            return try PriceSheet(json: Array(ShippedPrices.json.utf8), strict: false, path: "shipped prices")
        } catch {
            preconditionFailure("the shipped price table does not parse: \(error)")
        }
    }()

    /// Reads a price table. `strict` (the configuration's own entries) refuses fields that are
    /// not token prices; a file in LiteLLM's shape keeps its other fields and they are ignored.
    public init(json bytes: [UInt8], strict: Bool, path: String) throws(ConfigError) {
        let root: JSONValue
        do {
            root = try JSONValue.parse(bytes)
        } catch {
            throw ConfigError(path: path, "not valid JSON (\(error))")
        }
        try self.init(root, strict: strict, path: path)
    }

    init(_ root: JSONValue, strict: Bool, path: String) throws(ConfigError) {
        guard case .object(let entries) = root else {
            throw ConfigError(path: path, "expected an object of model name → prices")
        }
        var models: [String: ModelPrice] = [:]
        for (model, entry) in entries {
            // LiteLLM's file documents its fields in a `sample_spec` entry.
            if !strict && model == "sample_spec" { continue }
            let entryPath = "\(path).\(model)"
            guard case .object(let fields) = entry else {
                if strict { throw ConfigError(path: entryPath, "expected an object of prices") }
                continue
            }
            let price = try Self.price(fields, strict: strict, path: entryPath)
            if price.base.isEmpty && price.tiers.isEmpty { continue }
            models[model] = price
        }
        self.models = models
    }

    static func price(_ fields: [String: JSONValue], strict: Bool, path: String) throws(ConfigError) -> ModelPrice {
        var price = ModelPrice(base: .init())
        for (name, value) in fields {
            guard let (rate, threshold) = field(named: name) else {
                if strict {
                    throw ConfigError(
                        path: "\(path).\(name)",
                        "not a token price this gateway bills; use \(Self.fields.map(\.name).joined(separator: ", ")), or one of them with _above_<N>k_tokens"
                    )
                }
                continue
            }
            guard let usd = value.doubleValue, let pico = ModelPrice.picoUSD(perToken: usd) else {
                if strict {
                    throw ConfigError(path: "\(path).\(name)", "expected USD per token, a number from 0 below 1")
                }
                continue
            }
            if let threshold {
                price.tiers[threshold, default: .init()][keyPath: rate] = pico
            } else {
                price.base[keyPath: rate] = pico
            }
        }
        return price
    }

    /// A token-price field's rate and tier: `input_cost_per_token` → (input, nil),
    /// `input_cost_per_token_above_200k_tokens` → (input, 200,000).
    static func field(named name: String) -> (WritableKeyPath<ModelPrice.Rates, UInt64?>, Int?)? {
        for f in fields {
            if name == f.name { return (f.rate, nil) }
            let prefix = f.name + "_above_"
            guard name.hasPrefix(prefix), name.hasSuffix("k_tokens") else { continue }
            let number = name.dropFirst(prefix.count).dropLast("k_tokens".count)
            guard let thousands = Int(number), thousands > 0 else { return nil }
            return (f.rate, thousands * 1000)
        }
        return nil
    }

    /// This sheet with `other`'s entries laid over it field by field.
    public func overridden(by other: PriceSheet) -> PriceSheet {
        var models = self.models
        for (model, price) in other.models {
            models[model] = models[model].map { $0.overridden(by: price) } ?? price
        }
        return PriceSheet(models: models)
    }

    /// A model's price under its own name, else under the name without a `provider/` prefix.
    public func price(for model: String) -> ModelPrice? {
        if let p = models[model] { return p }
        if let slash = model.lastIndex(of: "/") { return models[String(model[model.index(after: slash)...])] }
        return nil
    }

    /// A canonical rendering of every price, for the table's version.
    var canonical: String {
        var out = ""
        for model in models.keys.sorted() {
            let p = models[model]!
            out += model + "\u{1F}" + Self.canonical(p.base)
            for t in p.tiers.keys.sorted() { out += "\u{1F}>\(t)\u{1F}" + Self.canonical(p.tiers[t]!) }
            out += "\u{1E}"
        }
        return out
    }

    private static func canonical(_ r: ModelPrice.Rates) -> String {
        [r.input, r.output, r.cacheRead, r.cacheWrite, r.reasoning].map { $0.map(String.init) ?? "-" }
            .joined(separator: ",")
    }
}
