import Crypto
import EventLog
import Foundation

/// Authenticates requests one node forwards to another (request migration).
///
/// The MAC key is derived from each cluster key with HKDF, so only cluster members can forward;
/// the MAC covers the sender, the time, the path, the virtual key and the body, and a request
/// older than `maxAgeMillis` is refused. Without cluster keys (an explicitly unencrypted
/// cluster) forwarded requests are accepted unauthenticated, like the rest of its traffic.
public struct HopAuthenticator: Sendable {
    /// Derived MAC keys, as raw bytes (SymmetricKey is not Sendable).
    let keyBytes: [[UInt8]]
    var keys: [SymmetricKey] { keyBytes.map { SymmetricKey(data: $0) } }
    public static let maxAgeMillis: UInt64 = 30_000

    public init(base64ClusterKeys: [String]) {
        keyBytes = ClusterKeyDerivation.derive(
            base64ClusterKeys: base64ClusterKeys, info: "bifrost inter-node requests")
    }

    public var isEnabled: Bool { !keyBytes.isEmpty }

    static func message(from: String, millis: UInt64, path: String, virtualKey: String, body: [UInt8]) -> Data {
        var data = Data("\(from)\n\(millis)\n\(path)\n\(virtualKey)\n".utf8)
        data.append(contentsOf: SHA256.hash(data: body))
        return data
    }

    /// The `x-bifrost-hop-auth` value for a forwarded request.
    public func sign(from: String, path: String, virtualKey: String, body: [UInt8], nowMillis: UInt64) -> String {
        guard let key = keys.first else { return "\(nowMillis)." }
        let mac = HMAC<SHA256>.authenticationCode(
            for: Self.message(from: from, millis: nowMillis, path: path, virtualKey: virtualKey, body: body), using: key
        )
        return "\(nowMillis).\(Data(mac).base64EncodedString())"
    }

    public func verify(
        _ header: String, from: String, path: String, virtualKey: String, body: [UInt8], nowMillis: UInt64
    ) -> Bool {
        guard isEnabled else { return true }
        let parts = header.split(separator: ".", maxSplits: 1)
        guard parts.count == 2, let millis = UInt64(parts[0]), let mac = Data(base64Encoded: String(parts[1])),
            millis + Self.maxAgeMillis >= nowMillis, millis <= nowMillis + Self.maxAgeMillis
        else { return false }
        let message = Self.message(from: from, millis: millis, path: path, virtualKey: virtualKey, body: body)
        return keys.contains { HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: message, using: $0) }
    }
}
