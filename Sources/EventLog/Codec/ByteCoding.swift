/// Appends primitive values to a byte buffer: fixed-width big-endian integers, LEB128 varints,
/// IEEE doubles, and length-prefixed byte strings.
public struct ByteWriter: Sendable {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 128) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public mutating func removeAll() { bytes.removeAll(keepingCapacity: true) }

    public mutating func write(_ byte: UInt8) { bytes.append(byte) }

    public mutating func write(bigEndian value: UInt64) {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
    }

    public mutating func write(varint value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    public mutating func write(_ value: Double) { write(bigEndian: value.bitPattern) }

    public mutating func write(_ value: Bool) { bytes.append(value ? 1 : 0) }

    public mutating func write(bytes value: some Collection<UInt8>) {
        write(varint: UInt64(value.count))
        bytes.append(contentsOf: value)
    }

    public mutating func write(_ string: String) {
        var string = string
        string.withUTF8 { write(bytes: $0) }
    }

    public mutating func write(_ strings: [String]) {
        write(varint: UInt64(strings.count))
        for s in strings { write(s) }
    }
}

/// A decoding failure: what was expected and at which byte offset of the input.
public struct DecodingError: Error, Hashable, Sendable, CustomStringConvertible {
    public var offset: Int
    public var reason: String

    public init(offset: Int, reason: String) {
        self.offset = offset
        self.reason = reason
    }

    public var description: String { "cannot decode event at byte \(offset): \(reason)" }
}

/// Reads what `ByteWriter` wrote, bounds-checked: every failure is a `DecodingError` with the
/// offset, never a trap.
/// Valid only while the buffer it reads is.
public struct ByteReader {
    public let buffer: UnsafeRawBufferPointer
    public private(set) var offset: Int = 0

    public init(_ buffer: UnsafeRawBufferPointer) { self.buffer = buffer }

    public var remaining: Int { buffer.count - offset }

    private func need(_ n: Int, _ what: String) throws(DecodingError) {
        if n > remaining {
            throw DecodingError(offset: offset, reason: "truncated: \(what) needs \(n) bytes, \(remaining) left")
        }
    }

    public mutating func readByte(_ what: String = "byte") throws(DecodingError) -> UInt8 {
        try need(1, what)
        defer { offset += 1 }
        return buffer[offset]
    }

    public mutating func readBigEndianUInt64(_ what: String = "u64") throws(DecodingError) -> UInt64 {
        try need(8, what)
        defer { offset += 8 }
        return UInt64(bigEndian: buffer.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    public mutating func readVarint(_ what: String = "varint") throws(DecodingError) -> UInt64 {
        let start = offset
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard offset < buffer.count else {
                throw DecodingError(offset: start, reason: "truncated: \(what) varint runs past the end")
            }
            let byte = buffer[offset]
            offset += 1
            if shift == 63 && byte > 1 {
                throw DecodingError(offset: start, reason: "\(what) varint overflows 64 bits")
            }
            result |= UInt64(byte & 0x7f) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
            if shift > 63 { throw DecodingError(offset: start, reason: "\(what) varint longer than 10 bytes") }
        }
    }

    public mutating func readVarint<T: FixedWidthInteger & UnsignedInteger>(
        _: T.Type, _ what: String
    ) throws(DecodingError)
        -> T
    {
        let start = offset
        let value = try readVarint(what)
        guard let narrowed = T(exactly: value) else {
            throw DecodingError(offset: start, reason: "\(what) = \(value) does not fit in \(T.bitWidth) bits")
        }
        return narrowed
    }

    public mutating func readDouble(_ what: String = "double") throws(DecodingError) -> Double {
        Double(bitPattern: try readBigEndianUInt64(what))
    }

    public mutating func readBool(_ what: String = "bool") throws(DecodingError) -> Bool {
        let start = offset
        switch try readByte(what) {
        case 0: return false
        case 1: return true
        case let b: throw DecodingError(offset: start, reason: "\(what) must be 0 or 1, found \(b)")
        }
    }

    public mutating func readLength(_ what: String) throws(DecodingError) -> Int {
        let start = offset
        let length = try readVarint(what)
        guard length <= UInt64(remaining) else {
            throw DecodingError(offset: start, reason: "truncated: \(what) claims \(length) bytes, \(remaining) left")
        }
        return Int(length)
    }

    public mutating func readBytes(_ what: String = "bytes") throws(DecodingError) -> [UInt8] {
        let n = try readLength(what)
        defer { offset += n }
        return Array(UnsafeRawBufferPointer(rebasing: buffer[offset..<offset + n]))
    }

    public mutating func readString(_ what: String = "string") throws(DecodingError) -> String {
        let n = try readLength(what)
        defer { offset += n }
        return String(decoding: UnsafeRawBufferPointer(rebasing: buffer[offset..<offset + n]), as: UTF8.self)
    }

    public mutating func readStrings(_ what: String) throws(DecodingError) -> [String] {
        let start = offset
        let count = try readVarint(what)
        // Every string takes at least one byte (its length), which bounds a hostile count.
        guard count <= UInt64(remaining) else {
            throw DecodingError(
                offset: start, reason: "truncated: \(what) claims \(count) strings, \(remaining) bytes left")
        }
        var out: [String] = []
        out.reserveCapacity(Int(count))
        for _ in 0..<count { out.append(try readString(what)) }
        return out
    }

    public mutating func readRest() -> [UInt8] {
        defer { offset = buffer.count }
        return Array(UnsafeRawBufferPointer(rebasing: buffer[offset...]))
    }
}
