import Crypto
import Foundation

/// Keys the gateway derives from the cluster keyring for one purpose each (forwarded-request
/// MACs, sealed secrets): HKDF-SHA256 over each base64 cluster key with the purpose as `info`,
/// so no derived key opens another purpose's data.
enum ClusterKeyDerivation {
    /// One 32-byte key per decodable cluster key, in keyring order, as raw bytes
    /// (`SymmetricKey` is not `Sendable`).
    static func derive(base64ClusterKeys: [String], info: String) -> [[UInt8]] {
        base64ClusterKeys.compactMap { Data(base64Encoded: $0) }.filter { !$0.isEmpty }.map { raw in
            HKDF<SHA256>.deriveKey(
                inputKeyMaterial: SymmetricKey(data: raw), info: Data(info.utf8), outputByteCount: 32
            ).withUnsafeBytes { Array($0) }
        }
    }
}
