import EventLog
import Foundation
import Logging

/// The routing and limit configuration in force, built once per configuration change and shared
/// read-only by every request.
///
/// The node's file config supplies it at start; a `config.updated` event (signed by a trusted
/// operator key) replaces `providers`, `virtual_keys`, `gateway`, `alerts` and `pricing`
/// cluster-wide. The `cluster` and `admin` sections stay node-local: a log event can never
/// change which keys a node trusts.
public final class RuntimeConfig: Sendable {
    public let config: BifrostConfig
    public let catalog: Catalog
    public let virtualKeys: VirtualKeyTable
    /// What each target charges, and which are unpriced.
    public let prices: PriceBook
    /// Provider-key secrets resolved from the environment; a key whose `env.NAME` is unset is
    /// missing here and never routed to.
    let secrets: [String: String]
    /// Keys that cannot be used and why (named in errors and logged once).
    public let unusableKeys: [String: String]
    /// The `config.updated` event this came from; nil for the node's file config.
    public let sourceEvent: EventID?

    public init(
        _ config: BifrostConfig, sourceEvent: EventID? = nil,
        environment: [String: String] = ProcessInfo.processInfo.environment, sealer: SecretSealer? = nil
    ) throws(ConfigError) {
        self.config = config
        self.sourceEvent = sourceEvent
        catalog = Catalog(config.providers)
        prices = PriceBook(catalog: catalog, pricing: config.pricing)
        virtualKeys = try VirtualKeyTable(config.virtualKeys, environment: environment, sealer: sealer)
        var secrets: [String: String] = [:]
        var unusable: [String: String] = [:]
        for provider in config.providers {
            for key in provider.keys {
                if let value = key.value.resolve(environment, sealer: sealer), !value.isEmpty {
                    secrets[key.id] = value
                } else {
                    unusable[key.id] = key.value.unresolvedReason
                }
            }
        }
        self.secrets = secrets
        unusableKeys = unusable
    }

    /// The document a `config.updated` event carries, applied over the node's own config.
    public static func merging(
        document: [UInt8], into base: BifrostConfig, sourceEvent: EventID,
        environment: [String: String] = ProcessInfo.processInfo.environment, sealer: SecretSealer? = nil
    ) throws(ConfigError) -> RuntimeConfig {
        let update = try BifrostConfig.parse(document)
        var merged = base
        merged.providers = update.providers
        merged.virtualKeys = update.virtualKeys
        merged.gateway = update.gateway
        merged.alerts = update.alerts
        merged.alertWebhook = update.alertWebhook
        merged.pricing = update.pricing
        return try RuntimeConfig(merged, sourceEvent: sourceEvent, environment: environment, sealer: sealer)
    }

    /// The configured weight of a key (before `weight.changed` events).
    public func configuredWeight(_ keyID: String) -> Double? { catalog.keys[keyID]?.key.weight }
}
