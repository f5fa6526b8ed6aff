import Crypto

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The cluster's shared secret keys: the first (primary) seals, every key opens.
///
/// A key is 32 random bytes written as base64 (`bifrost keygen` prints one), configured in
/// `cluster.encryption.keys` (first = primary) or in `BIFROST_CLUSTER_KEY` (comma-separated, same
/// order). Every node of a cluster holds the same keys; a node without them can neither read nor
/// inject cluster traffic (`Envelope`).
///
/// Rotation without downtime is three rolling config changes; finish each on every node before
/// starting the next:
/// 1. add: `[k1, k2]` — every node opens k2 but still seals with k1.
/// 2. use: `[k2, k1]` — nodes seal with k2; a node not yet switched seals with k1, which every
///    node still opens.
/// 3. remove: `[k2]` — once `TransportStats.Snapshot.openedWithSecondaryKey` stops growing on
///    every node, nobody seals with k1 any more.
///
/// Each key has a 4-byte id, the first 4 bytes of SHA-256("bifrost-key-id" ‖ key), sent in clear
/// in every envelope so the receiver tries only the key the sender used. The id says which key
/// sealed a message and nothing about the key itself (SHA-256 preimage resistance); the label
/// keeps it distinct from any other hash of the same key.
public struct Keyring: Sendable {
    public static let keyByteCount = 32
    public static let configKey = "cluster.encryption.keys"
    public static let environmentVariable = "BIFROST_CLUSTER_KEY"

    struct Entry: @unchecked Sendable {
        // @unchecked: `SymmetricKey` is an immutable value (its storage is never mutated after
        // init) but swift-crypto does not declare it `Sendable`.
        let id: UInt32
        let key: SymmetricKey
    }

    /// Primary first; no two entries hold the same key.
    let entries: [Entry]

    /// Ids of the keys, primary first.
    public var keyIDs: [UInt32] { entries.map(\.id) }
    public var primaryKeyID: UInt32 { entries[0].id }

    /// Parses the configured keys, primary first. Surrounding whitespace is ignored (keys often
    /// come from files with a trailing newline); a key listed twice counts once.
    ///
    /// - Parameter source: the setting the keys came from, named in errors.
    public init(base64Keys: [String], source: String = Keyring.configKey) throws(KeyringError) {
        guard !base64Keys.isEmpty else {
            throw KeyringError(
                .noKeys, source: source, index: nil,
                "no cluster key configured: set \(source) (first = primary) to base64 of 32 bytes; run `bifrost keygen`"
            )
        }
        var entries: [Entry] = []
        var seen: [[UInt8]] = []
        for (index, text) in base64Keys.enumerated() {
            let trimmed = text.trimmingWhitespace()
            guard !trimmed.isEmpty, let data = Data(base64Encoded: trimmed) else {
                let what = trimmed.isEmpty ? "is empty" : "is not base64"
                throw KeyringError(
                    .badKey, source: source, index: index, "\(what); expected base64 of 32 bytes; run `bifrost keygen`")
            }
            guard data.count == Self.keyByteCount else {
                throw KeyringError(
                    .badKey, source: source, index: index,
                    "decodes to \(data.count) bytes; expected base64 of 32 bytes; run `bifrost keygen`")
            }
            let bytes = Array(data)
            if seen.contains(bytes) { continue }
            seen.append(bytes)
            entries.append(Entry(id: Self.keyID(of: bytes), key: SymmetricKey(data: bytes)))
        }
        self.entries = entries
    }

    /// The keys in `BIFROST_CLUSTER_KEY` (comma-separated, first = primary), or nil if it is unset
    /// or blank.
    public static func fromEnvironment(
        _ environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(KeyringError) -> Keyring? {
        guard let value = environment[environmentVariable], !value.allSatisfy(\.isWhitespace) else { return nil }
        return try Keyring(
            base64Keys: value.split(separator: ",", omittingEmptySubsequences: false).map(String.init),
            source: environmentVariable)
    }

    /// A new key from the system CSPRNG, as base64: what `bifrost keygen` prints.
    public static func generateKeyBase64() -> String {
        SymmetricKey(size: .bits256).withUnsafeBytes { Data($0).base64EncodedString() }
    }

    /// The first 4 bytes, big-endian, of SHA-256("bifrost-key-id" ‖ key).
    public static func keyID(of key: [UInt8]) -> UInt32 {
        var hasher = SHA256()
        hasher.update(data: Array("bifrost-key-id".utf8))
        hasher.update(data: key)
        return hasher.finalize().prefix(4).reduce(0) { $0 << 8 | UInt32($1) }
    }

    /// 8 lowercase hex digits, as key ids appear in logs.
    public static func hex(keyID: UInt32) -> String {
        let digits = String(keyID, radix: 16)
        return String(repeating: "0", count: 8 - digits.count) + digits
    }
}

/// Why the configured cluster keys cannot be used. Never contains key material.
public struct KeyringError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case noKeys = "no_cluster_keys"
        case badKey = "bad_cluster_key"
    }

    public var code: Code
    /// The setting the keys came from: `cluster.encryption.keys` or `BIFROST_CLUSTER_KEY`.
    public var source: String
    /// Position of the bad key in `source`, 0-based.
    public var index: Int?
    public var message: String

    public init(_ code: Code, source: String, index: Int?, _ message: String) {
        self.code = code
        self.source = source
        self.index = index
        self.message = message
    }

    public var description: String {
        guard let index else { return message }
        return "\(source)[\(index)] \(message)"
    }
}

extension String {
    fileprivate func trimmingWhitespace() -> String {
        String(self.drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
    }
}
