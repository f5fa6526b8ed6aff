import Crypto

/// A node's 64-bit identity inside event ids. Derived from the configured node name
/// (`cluster.node_id`) so every tool can compute it from the name alone.
public struct NodeID: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64

    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// The first 8 bytes (big-endian) of SHA-256 of the UTF-8 name.
    public init(name: String) {
        let digest = SHA256.hash(data: Array(name.utf8))
        var value: UInt64 = 0
        for byte in digest.prefix(8) { value = value << 8 | UInt64(byte) }
        self.rawValue = value
    }

    /// 16 lowercase hex digits.
    public var hex: String {
        let digits = String(rawValue, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }

    public init?(hex: String) {
        guard hex.count == 16, let value = UInt64(hex, radix: 16) else { return nil }
        self.rawValue = value
    }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { hex }
}
