/// The identity and global order of an event: `(hlc, origin)`.
///
/// Stored as the 16-byte LMDB key `hlc (8, big-endian) ‖ origin (8, big-endian)`, so an LMDB
/// cursor walks the log in HLC order and ties break by origin.
public struct EventID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var hlc: HLCTimestamp
    public var origin: NodeID

    public static let byteCount = 16

    public init(hlc: HLCTimestamp, origin: NodeID) {
        self.hlc = hlc
        self.origin = origin
    }

    public static func < (lhs: Self, rhs: Self) -> Bool {
        (lhs.hlc.rawValue, lhs.origin.rawValue) < (rhs.hlc.rawValue, rhs.origin.rawValue)
    }

    /// Writes the 16-byte key into `buffer`, which must hold at least 16 bytes.
    @inlinable
    public func write(to buffer: UnsafeMutableRawBufferPointer) {
        precondition(buffer.count >= Self.byteCount, "event id needs 16 bytes, got \(buffer.count)")
        buffer.storeBytes(of: hlc.rawValue.bigEndian, toByteOffset: 0, as: UInt64.self)
        buffer.storeBytes(of: origin.rawValue.bigEndian, toByteOffset: 8, as: UInt64.self)
    }

    public var bytes: [UInt8] {
        [UInt8](unsafeUninitializedCapacity: Self.byteCount) { buffer, count in
            write(to: UnsafeMutableRawBufferPointer(buffer))
            count = Self.byteCount
        }
    }

    /// Reads a key written by `write(to:)`; nil when `buffer` is not 16 bytes.
    public init?(key buffer: UnsafeRawBufferPointer) {
        guard buffer.count == Self.byteCount else { return nil }
        self.hlc = HLCTimestamp(rawValue: UInt64(bigEndian: buffer.loadUnaligned(fromByteOffset: 0, as: UInt64.self)))
        self.origin = NodeID(rawValue: UInt64(bigEndian: buffer.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
    }

    public var description: String { "\(hlc.rawValue)@\(origin.hex)" }
}
