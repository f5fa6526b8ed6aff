import Crypto

/// The fingerprint of a set of events: `(Σ SHA-256(event bytes) mod 2^256, count)`.
///
/// As in Negentropy (Doug Hoyte, "Range-Based Set Reconciliation", §"Fingerprints"): addition
/// mod 2^256 is commutative and subtractable, so a bucket's fingerprint is updated in O(1) when
/// an event is inserted or removed, in any order, and two sets are equal (with overwhelming
/// probability) iff their fingerprints are. Hashes are read as little-endian 256-bit integers.
public struct Fingerprint: Hashable, Sendable, CustomStringConvertible {
    /// Little-endian 64-bit limbs of the 256-bit sum.
    public var limbs: (UInt64, UInt64, UInt64, UInt64)
    public var count: UInt64

    public static let zero = Fingerprint(limbs: (0, 0, 0, 0), count: 0)
    public static let encodedSize = 40

    public init(limbs: (UInt64, UInt64, UInt64, UInt64), count: UInt64) {
        self.limbs = limbs
        self.count = count
    }

    /// The fingerprint of one event's encoded bytes.
    public init(eventBytes: UnsafeRawBufferPointer) {
        let digest = SHA256.hash(data: eventBytes)
        self = digest.withUnsafeBytes { d in
            Fingerprint(
                limbs: (
                    UInt64(littleEndian: d.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
                    UInt64(littleEndian: d.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
                    UInt64(littleEndian: d.loadUnaligned(fromByteOffset: 16, as: UInt64.self)),
                    UInt64(littleEndian: d.loadUnaligned(fromByteOffset: 24, as: UInt64.self))
                ), count: 1)
        }
    }

    public init(eventBytes: [UInt8]) {
        self = eventBytes.withUnsafeBytes { Fingerprint(eventBytes: $0) }
    }

    public static func == (a: Self, b: Self) -> Bool {
        a.limbs.0 == b.limbs.0 && a.limbs.1 == b.limbs.1 && a.limbs.2 == b.limbs.2 && a.limbs.3 == b.limbs.3
            && a.count == b.count
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(limbs.0)
        hasher.combine(limbs.1)
        hasher.combine(limbs.2)
        hasher.combine(limbs.3)
        hasher.combine(count)
    }

    public mutating func add(_ other: Fingerprint) {
        var carry = false
        (limbs.0, carry) = Self.addWithCarry(limbs.0, other.limbs.0, carry)
        (limbs.1, carry) = Self.addWithCarry(limbs.1, other.limbs.1, carry)
        (limbs.2, carry) = Self.addWithCarry(limbs.2, other.limbs.2, carry)
        (limbs.3, _) = Self.addWithCarry(limbs.3, other.limbs.3, carry)
        count &+= other.count
    }

    public mutating func subtract(_ other: Fingerprint) {
        var borrow = false
        (limbs.0, borrow) = Self.subtractWithBorrow(limbs.0, other.limbs.0, borrow)
        (limbs.1, borrow) = Self.subtractWithBorrow(limbs.1, other.limbs.1, borrow)
        (limbs.2, borrow) = Self.subtractWithBorrow(limbs.2, other.limbs.2, borrow)
        (limbs.3, _) = Self.subtractWithBorrow(limbs.3, other.limbs.3, borrow)
        count &-= other.count
    }

    @inline(__always)
    private static func addWithCarry(_ a: UInt64, _ b: UInt64, _ carry: Bool) -> (UInt64, Bool) {
        let (s1, o1) = a.addingReportingOverflow(b)
        let (s2, o2) = s1.addingReportingOverflow(carry ? 1 : 0)
        return (s2, o1 || o2)
    }

    @inline(__always)
    private static func subtractWithBorrow(_ a: UInt64, _ b: UInt64, _ borrow: Bool) -> (UInt64, Bool) {
        let (d1, o1) = a.subtractingReportingOverflow(b)
        let (d2, o2) = d1.subtractingReportingOverflow(borrow ? 1 : 0)
        return (d2, o1 || o2)
    }

    /// 40 bytes: the sum little-endian, then the count big-endian.
    public var bytes: [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(Self.encodedSize)
        for limb in [limbs.0, limbs.1, limbs.2, limbs.3] { withUnsafeBytes(of: limb.littleEndian) { out += $0 } }
        withUnsafeBytes(of: count.bigEndian) { out += $0 }
        return out
    }

    public init?(bytes: UnsafeRawBufferPointer) {
        guard bytes.count == Self.encodedSize else { return nil }
        limbs = (
            UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
            UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
            UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 16, as: UInt64.self)),
            UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 24, as: UInt64.self))
        )
        count = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 32, as: UInt64.self))
    }

    /// The sum as 64 hex digits (big-endian reading), for display and comparison across nodes.
    public var sumHex: String {
        [limbs.3, limbs.2, limbs.1, limbs.0].map { limb in
            let s = String(limb, radix: 16)
            return String(repeating: "0", count: 16 - s.count) + s
        }.joined()
    }

    public var description: String { "\(sumHex)/\(count)" }
}

/// A node of the digest tree: `level` 0 is a leaf bucket of 2^10 ms of HLC wall time; each level
/// above fans out 16 (16 s, 4.4 min, 70 min, 18.6 h, 12.4 d); `DigestKey.root` covers the whole
/// log. Stored big-endian (`level ‖ bucket`) so a cursor walks one level in time order.
public struct DigestKey: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var level: UInt8
    public var bucket: UInt64

    public static let leafShift: UInt64 = 10
    public static let fanOutShift: UInt64 = 4
    /// Levels 0…5 are time buckets.
    public static let topLevel: UInt8 = 5
    public static let rootLevel: UInt8 = 0xff
    public static let root = DigestKey(level: rootLevel, bucket: 0)

    public init(level: UInt8, bucket: UInt64) {
        self.level = level
        self.bucket = bucket
    }

    /// The bucket at `level` that holds events with this HLC.
    public init(level: UInt8, hlc: HLCTimestamp) {
        precondition(level <= Self.topLevel, "digest level \(level) above top level \(Self.topLevel)")
        self.level = level
        self.bucket = hlc.wallMillis >> (Self.leafShift + Self.fanOutShift * UInt64(level))
    }

    /// Every digest node an event with this HLC contributes to, leaf first, root last.
    public static func path(for hlc: HLCTimestamp) -> [DigestKey] {
        (0...topLevel).map { DigestKey(level: $0, hlc: hlc) } + [root]
    }

    /// Width of one bucket at `level` in milliseconds.
    public static func spanMillis(level: UInt8) -> UInt64 {
        1 << (leafShift + fanOutShift * UInt64(level))
    }

    /// HLC range `[lower, upper)` covered by this bucket (root: everything).
    public var hlcRange: Range<HLCTimestamp> {
        if level == Self.rootLevel { return HLCTimestamp.zero..<HLCTimestamp.max }
        let span = Self.spanMillis(level: level)
        let lower = HLCTimestamp(rawValue: (bucket * span) << HLCTimestamp.logicalBits)
        let upperMillis = (bucket + 1) * span
        let upper =
            upperMillis > HLCTimestamp.wallMax
            ? HLCTimestamp.max : HLCTimestamp(rawValue: upperMillis << HLCTimestamp.logicalBits)
        return lower..<upper
    }

    public var bytes: [UInt8] {
        var out: [UInt8] = [level]
        withUnsafeBytes(of: bucket.bigEndian) { out += $0 }
        return out
    }

    public init?(bytes: UnsafeRawBufferPointer) {
        guard bytes.count == 9 else { return nil }
        level = bytes[0]
        bucket = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 1, as: UInt64.self))
    }

    public static func < (a: Self, b: Self) -> Bool { (a.level, a.bucket) < (b.level, b.bucket) }

    public var description: String { level == Self.rootLevel ? "root" : "L\(level)/\(bucket)" }
}
