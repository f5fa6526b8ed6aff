import Crypto
import EventLog
import Foundation

/// The virtual keys clients present, kept as SHA-256 digests: the tokens themselves are never
/// stored, logged or compared in the clear.
public struct VirtualKeyTable: Sendable {
    public struct Entry: Sendable {
        public var name: String
        public var models: [ModelPattern]
        public var limits: BifrostConfig.Limits
        public var budget: BudgetLimit? = nil
    }

    private let byDigest: [[UInt8]: Entry]

    /// Whether any virtual key is configured; without one the API is open.
    public var isEnabled: Bool { !byDigest.isEmpty }
    public var count: Int { byDigest.count }

    /// Resolves every token; a key whose `env.NAME` is unset (or whose sealed value this node
    /// cannot open) is an error naming its path.
    public init(
        _ keys: [BifrostConfig.VirtualKey], environment: [String: String], sealer: SecretSealer? = nil
    ) throws(ConfigError) {
        var table: [[UInt8]: Entry] = [:]
        for (i, key) in keys.enumerated() {
            guard let token = key.value.resolve(environment, sealer: sealer), !token.isEmpty else {
                throw ConfigError(path: "virtual_keys[\(i)].value", key.value.unresolvedReason)
            }
            table[Array(SHA256.hash(data: Array(token.utf8)))] = Entry(
                name: key.name, models: key.models.map(ModelPattern.init), limits: key.limits, budget: key.budget)
        }
        byDigest = table
    }

    /// The key with this name (requests migrated from a peer carry the name, not the token).
    public func entry(named name: String) -> Entry? { byDigest.values.first { $0.name == name } }

    /// The key a client token belongs to, or nil.
    public func lookup(token: Substring) -> Entry? {
        byDigest[Array(SHA256.hash(data: Array(token.utf8)))]
    }
}

/// The token a client sent: `Authorization: Bearer …`, or `x-api-key` (Anthropic clients).
public enum ClientToken {
    public static func extract(authorization: String?, apiKey: String?) -> Substring? {
        if let authorization {
            let trimmed = authorization.drop { $0 == " " }
            if trimmed.count > 7, trimmed.prefix(7).lowercased() == "bearer " {
                let token = trimmed.dropFirst(7).drop { $0 == " " }
                if !token.isEmpty { return token }
            }
        }
        if let apiKey, !apiKey.isEmpty { return Substring(apiKey) }
        return nil
    }
}

/// Compares two secrets in time independent of where they differ.
public func constantTimeEquals(_ a: some Collection<UInt8>, _ b: some Collection<UInt8>) -> Bool {
    var difference: UInt8 = a.count == b.count ? 0 : 1
    var ia = a.makeIterator()
    for byteB in b {
        difference |= (ia.next() ?? 0) ^ byteB
    }
    return difference == 0
}
