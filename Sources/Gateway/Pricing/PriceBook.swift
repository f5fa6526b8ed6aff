import Crypto
import Foundation

/// The price of every way the configuration can serve a model, fixed when the configuration
/// is loaded: the shipped table, under the operator's `pricing.file`, under `pricing.models`,
/// under a provider key's own `pricing`, each laid over the one before field by field.
///
/// A target without input and output prices is unpriced: its cost is unknown, never $0.
public struct PriceBook: Sendable {
    /// Key id → model → price; nil entries are unpriced.
    private let prices: [String: [String: ModelPrice]]
    /// `(key id, model)` of every unpriced target, sorted.
    public let unpriced: [(keyID: String, model: String)]
    /// Identifies the prices in force: the shipped table's date and a digest of every price of
    /// every target. Recorded with each priced request.
    public let version: String

    public init(catalog: Catalog, pricing: BifrostConfig.Pricing, shipped: PriceSheet = .shipped) {
        let sheet = shipped.overridden(by: pricing.fileSheet).overridden(by: pricing.models)
        var prices: [String: [String: ModelPrice]] = [:]
        var unpriced: [(String, String)] = []
        var canonical = ""
        for keyID in catalog.keys.keys.sorted() {
            let key = catalog.keys[keyID]!.key
            for model in key.models {
                var price = sheet.price(for: model)
                if let own = key.pricing.price(for: model) { price = price.map { $0.overridden(by: own) } ?? own }
                if let price, price.isComplete {
                    prices[keyID, default: [:]][model] = price
                    canonical += keyID + "\u{1D}" + PriceSheet(models: [model: price]).canonical
                } else {
                    unpriced.append((keyID, model))
                }
            }
        }
        self.prices = prices
        self.unpriced = unpriced
        let digest = SHA256.hash(data: Array(canonical.utf8)).prefix(6).map { String(format: "%02x", $0) }.joined()
        version = "\(ShippedPrices.takenOn).\(digest)"
    }

    /// The price `keyID` charges for `model`, nil when unpriced.
    public func price(keyID: String, model: String) -> ModelPrice? {
        prices[keyID]?[model]
    }

    /// The cost of `usage` on a target in micro-USD; nil when the target is unpriced.
    public func microUSD(_ usage: Usage, keyID: String, model: String) -> UInt64? {
        price(keyID: keyID, model: model)?.microUSD(usage)
    }
}
