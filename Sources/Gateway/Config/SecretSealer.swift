import Crypto
import Foundation

/// Seals the secrets of configuration documents that go into the log, so no provider key or
/// virtual-key token sits there in plain text (DESIGN §3).
///
/// A sealed value reads `sealed:v1:<key id>:<base64 nonce ‖ ciphertext ‖ tag>`: ChaCha20-Poly1305
/// under a key derived by HKDF-SHA256 from a cluster key. The first cluster key seals; any of
/// them opens, so a rotated keyring still opens what older keys sealed. A node without the key
/// cannot use the value, and says so for that key.
public struct SecretSealer: Sendable {
    public static let prefix = "sealed:v1:"
    static let info = "bifrost config secrets v1"
    static let associatedData = Data("bifrost sealed secret".utf8)

    struct Key: Sendable {
        var id: String
        /// The derived key's bytes (`SymmetricKey` is not `Sendable`).
        var bytes: [UInt8]
        var key: SymmetricKey { SymmetricKey(data: bytes) }
    }

    let keys: [Key]

    /// Nil without a usable cluster key: such a node can only refer to secrets by `env.NAME`.
    public init?(base64ClusterKeys: [String]) {
        let keys = ClusterKeyDerivation.derive(base64ClusterKeys: base64ClusterKeys, info: Self.info).map { derived in
            Key(id: SHA256.hash(data: derived).prefix(4).map { String(format: "%02x", $0) }.joined(), bytes: derived)
        }
        guard !keys.isEmpty else { return nil }
        self.keys = keys
    }

    public static func isSealed(_ text: String) -> Bool { text.hasPrefix(prefix) }

    public func seal(_ secret: String) -> String {
        let key = keys[0]
        // A fresh random nonce per value; sealing only fails for a key of the wrong size.
        let box = try! ChaChaPoly.seal(Data(secret.utf8), using: key.key, authenticating: Self.associatedData)
        return "\(Self.prefix)\(key.id):\(box.combined.base64EncodedString())"
    }

    /// The secret, or nil when no key of this node sealed it or the value was altered.
    public func open(_ sealed: String) -> String? {
        guard Self.isSealed(sealed) else { return nil }
        let rest = sealed.dropFirst(Self.prefix.count)
        guard let colon = rest.firstIndex(of: ":"),
            let combined = Data(base64Encoded: String(rest[rest.index(after: colon)...]))
        else { return nil }
        let id = String(rest[..<colon])
        guard let key = keys.first(where: { $0.id == id }),
            let box = try? ChaChaPoly.SealedBox(combined: combined),
            let plain = try? ChaChaPoly.open(box, using: key.key, authenticating: Self.associatedData)
        else { return nil }
        return String(decoding: plain, as: UTF8.self)
    }
}
