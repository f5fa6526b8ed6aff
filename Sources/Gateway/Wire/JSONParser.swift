import EventLog

/// Why a body is not JSON: what was wrong and at which byte.
public struct JSONParseError: Error, Sendable, Hashable, CustomStringConvertible {
    public var reason: String
    /// Byte offset into the document where parsing stopped.
    public var offset: Int

    public init(reason: String, offset: Int) {
        self.reason = reason
        self.offset = offset
    }

    public var description: String { "\(reason) at byte \(offset)" }
}

/// Where one member of the top-level object sits in the original bytes, so a same-API forward
/// can change a field by splicing instead of re-rendering the whole body.
///
///     {"model" : "gpt-4o" , "stream":true}
///      ^start    ^valueStart ^end
struct JSONMemberSpan: Sendable, Hashable {
    var key: String
    /// Offset of the key's opening quote.
    var start: Int
    var valueStart: Int
    /// One past the value's last byte.
    var end: Int
}

/// Which parts of a document `JSONParser` builds into values; the rest is checked as strictly
/// and skipped, so a gateway that forwards a body reads its few fields without building the
/// tree of its messages.
public indirect enum JSONProjection: Sendable {
    /// The whole value.
    case whole
    /// An object's listed members by their projections; the others are skipped (and absent
    /// from the result). Any other value is built whole.
    case members([String: JSONProjection])
    /// Each item of an array by this projection. Any other value is built whole.
    case items(JSONProjection)
    /// Checked only; stands as `.null` in the result.
    case skipped
}

/// A strict RFC 8259 parser straight from UTF-8 bytes into `JSONValue`.
///
/// `JSONDecoder` through `JSONValue`'s `Decodable` conformance tries every scalar type in turn
/// and pays for a thrown error per miss: on a 300-byte chat body it took 41 µs against 2.7 µs
/// here (release build, 2-core x86_64 VM), and the gateway's overhead budget is 50 µs a request.
///
/// Semantics, chosen to match `JSONValue.parse` where it matters:
/// - integers without fraction or exponent become `.int` (or `.uint` above `Int64.max`, `.double`
///   beyond `UInt64`); any number with `.` or `e` becomes `.double`;
/// - duplicate object keys: the last one wins;
/// - strings must be valid UTF-8; an unpaired `\uD800`-style surrogate escape becomes U+FFFD
///   rather than failing the whole request;
/// - nesting deeper than `maxDepth` is rejected (the parser recurses).
public enum JSONParser {
    public static let defaultMaxDepth = 256

    public static func parse(_ bytes: [UInt8], maxDepth: Int = defaultMaxDepth) throws(JSONParseError) -> JSONValue {
        try parse(bytes, maxDepth: maxDepth, spans: false).value
    }

    /// Parses and, when the document is an object, records where each top-level member sits
    /// (skipped members included).
    static func parse(
        _ bytes: [UInt8], maxDepth: Int = defaultMaxDepth, projection: JSONProjection = .whole, spans: Bool
    ) throws(JSONParseError) -> (
        value: JSONValue, members: [JSONMemberSpan]
    ) {
        try bytes.withUnsafeBufferPointer { (buffer) throws(JSONParseError) in
            try parse(buffer, maxDepth: maxDepth, projection: projection, spans: spans)
        }
    }

    /// `parse` over bytes in place (a `ByteBuffer`'s readable bytes, without copying them out).
    static func parse(
        _ buffer: UnsafeBufferPointer<UInt8>, maxDepth: Int = defaultMaxDepth, projection: JSONProjection = .whole,
        spans: Bool
    ) throws(JSONParseError) -> (value: JSONValue, members: [JSONMemberSpan]) {
        var reader = Reader(buffer, maxDepth: maxDepth, recordSpans: spans)
        reader.skipWhitespace()
        let value = try reader.parseValue(depth: 0, projection: projection)
        reader.skipWhitespace()
        guard reader.index == buffer.count else { throw reader.error("unexpected data after the JSON value") }
        return (value, reader.members)
    }

    private struct Reader {
        let bytes: UnsafeBufferPointer<UInt8>
        let maxDepth: Int
        let recordSpans: Bool
        var index = 0
        var members: [JSONMemberSpan] = []
        /// Reused for strings with escapes.
        var scratch: [UInt8] = []

        init(_ bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int, recordSpans: Bool) {
            self.bytes = bytes
            self.maxDepth = maxDepth
            self.recordSpans = recordSpans
        }

        func error(_ reason: String) -> JSONParseError { JSONParseError(reason: reason, offset: index) }

        @inline(__always) mutating func skipWhitespace() {
            while index < bytes.count {
                switch bytes[index] {
                case 0x20, 0x0A, 0x0D, 0x09: index += 1
                default: return
                }
            }
        }

        mutating func parseValue(depth: Int, projection: JSONProjection) throws(JSONParseError) -> JSONValue {
            switch projection {
            case .whole:
                return try parseValue(depth: depth)
            case .skipped:
                try skipValue(depth: depth)
                return .null
            case .members(let wanted):
                guard index < bytes.count, bytes[index] == UInt8(ascii: "{") else {
                    return try parseValue(depth: depth)
                }
                return try parseObject(depth: depth + 1, wanted: wanted)
            case .items(let item):
                guard index < bytes.count, bytes[index] == UInt8(ascii: "[") else {
                    return try parseValue(depth: depth)
                }
                return try parseArray(depth: depth + 1, item: item)
            }
        }

        mutating func parseValue(depth: Int) throws(JSONParseError) -> JSONValue {
            guard index < bytes.count else { throw error("unexpected end of input") }
            switch bytes[index] {
            case UInt8(ascii: "{"): return try parseObject(depth: depth + 1, wanted: nil)
            case UInt8(ascii: "["): return try parseArray(depth: depth + 1, item: nil)
            case UInt8(ascii: "\""): return .string(try parseString())
            case UInt8(ascii: "t"):
                try literal("true")
                return .bool(true)
            case UInt8(ascii: "f"):
                try literal("false")
                return .bool(false)
            case UInt8(ascii: "n"):
                try literal("null")
                return .null
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
            default: throw error("unexpected character '\(Self.printable(bytes[index]))'")
            }
        }

        static func printable(_ byte: UInt8) -> String {
            (0x21..<0x7F).contains(byte) ? String(UnicodeScalar(byte)) : "\\x" + String(byte, radix: 16)
        }

        mutating func literal(_ word: StaticString) throws(JSONParseError) {
            let count = word.utf8CodeUnitCount
            guard bytes.count - index >= count else { throw error("invalid literal") }
            let expected = UnsafeBufferPointer(start: word.utf8Start, count: count)
            for k in 0..<count where bytes[index + k] != expected[k] { throw error("invalid literal") }
            index += count
        }

        /// At `{` or `[`: steps in; false when the container is empty (and already closed).
        mutating func enter(depth: Int, closing: UInt8) throws(JSONParseError) -> Bool {
            guard depth <= maxDepth else { throw error("nesting deeper than \(maxDepth) levels") }
            index += 1
            skipWhitespace()
            guard index < bytes.count, bytes[index] == closing else { return true }
            index += 1
            return false
        }

        /// After a member or item: true when another follows, false past the closing bracket.
        mutating func another(closing: UInt8) throws(JSONParseError) -> Bool {
            let object = closing == UInt8(ascii: "}")
            skipWhitespace()
            guard index < bytes.count else {
                throw error(object ? "unexpected end of input in an object" : "unexpected end of input in an array")
            }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
                skipWhitespace()
                return true
            }
            guard bytes[index] == closing else { throw error(object ? "expected ',' or '}'" : "expected ',' or ']'") }
            index += 1
            return false
        }

        mutating func expectKey() throws(JSONParseError) {
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw error("expected a string key") }
        }

        /// Past a key: the colon and the whitespace around it.
        mutating func colon() throws(JSONParseError) {
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw error("expected ':'") }
            index += 1
            skipWhitespace()
        }

        /// `wanted`: the members to build and their projections; nil builds every member whole.
        mutating func parseObject(depth: Int, wanted: [String: JSONProjection]?) throws(JSONParseError) -> JSONValue {
            let top = depth == 1 && recordSpans
            var fields: [String: JSONValue] = [:]
            guard try enter(depth: depth, closing: UInt8(ascii: "}")) else { return .object(fields) }
            repeat {
                try expectKey()
                let start = index
                let key = try parseString()
                try colon()
                let valueStart = index
                if let wanted {
                    if let projection = wanted[key] {
                        fields[key] = try parseValue(depth: depth, projection: projection)
                    } else {
                        try skipValue(depth: depth)
                    }
                } else {
                    fields[key] = try parseValue(depth: depth)
                }
                if top { members.append(JSONMemberSpan(key: key, start: start, valueStart: valueStart, end: index)) }
            } while try another(closing: UInt8(ascii: "}"))
            return .object(fields)
        }

        /// `item`: the projection of each item; nil builds them whole.
        mutating func parseArray(depth: Int, item: JSONProjection?) throws(JSONParseError) -> JSONValue {
            var items: [JSONValue] = []
            guard try enter(depth: depth, closing: UInt8(ascii: "]")) else { return .array(items) }
            repeat {
                if let item {
                    items.append(try parseValue(depth: depth, projection: item))
                } else {
                    items.append(try parseValue(depth: depth))
                }
            } while try another(closing: UInt8(ascii: "]"))
            return .array(items)
        }

        /// Checks one value as `parseValue` would, building nothing.
        mutating func skipValue(depth: Int) throws(JSONParseError) {
            guard index < bytes.count else { throw error("unexpected end of input") }
            switch bytes[index] {
            case UInt8(ascii: "{"):
                guard try enter(depth: depth + 1, closing: UInt8(ascii: "}")) else { return }
                repeat {
                    try expectKey()
                    try skipString()
                    try colon()
                    try skipValue(depth: depth + 1)
                } while try another(closing: UInt8(ascii: "}"))
            case UInt8(ascii: "["):
                guard try enter(depth: depth + 1, closing: UInt8(ascii: "]")) else { return }
                repeat { try skipValue(depth: depth + 1) } while try another(closing: UInt8(ascii: "]"))
            case UInt8(ascii: "\""):
                try skipString()
            default:
                _ = try parseValue(depth: depth)
            }
        }

        /// Checks a string as `parseString` would (escapes, control characters, UTF-8) without
        /// making it.
        mutating func skipString() throws(JSONParseError) {
            index += 1
            let start = index
            var ascii = true
            while index < bytes.count {
                let b = bytes[index]
                if b == UInt8(ascii: "\"") {
                    if !ascii && !Self.isValidUTF8(UnsafeBufferPointer(rebasing: bytes[start..<index])) {
                        throw JSONParseError(reason: "invalid UTF-8 in a string", offset: start)
                    }
                    index += 1
                    return
                }
                if b < 0x20 { throw error("unescaped control character in a string") }
                if b >= 0x80 { ascii = false }
                index += 1
                guard b == UInt8(ascii: "\\") else { continue }
                guard index < bytes.count else { break }
                switch bytes[index] {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                    UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    index += 1
                case UInt8(ascii: "u"):
                    index += 1
                    _ = try hex4()
                default:
                    throw error("invalid escape '\\\(Self.printable(bytes[index]))'")
                }
            }
            throw error("unterminated string")
        }

        static func isValidUTF8(_ utf8: UnsafeBufferPointer<UInt8>) -> Bool {
            var parser = Unicode.UTF8.ForwardParser()
            var iterator = utf8.makeIterator()
            while true {
                switch parser.parseScalar(from: &iterator) {
                case .valid: continue
                case .emptyInput: return true
                case .error: return false
                }
            }
        }

        /// At the opening quote; leaves the index after the closing one.
        mutating func parseString() throws(JSONParseError) -> String {
            index += 1
            let start = index
            var ascii = true
            // Fast path: no escapes.
            while index < bytes.count {
                let b = bytes[index]
                if b == UInt8(ascii: "\"") {
                    let s = try makeString(UnsafeBufferPointer(rebasing: bytes[start..<index]), ascii: ascii, at: start)
                    index += 1
                    return s
                }
                if b == UInt8(ascii: "\\") { break }
                if b < 0x20 { throw error("unescaped control character in a string") }
                if b >= 0x80 { ascii = false }
                index += 1
            }
            guard index < bytes.count else { throw error("unterminated string") }
            scratch.removeAll(keepingCapacity: true)
            scratch.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start..<index]))
            while index < bytes.count {
                let b = bytes[index]
                if b == UInt8(ascii: "\"") {
                    index += 1
                    let s = try scratch.withUnsafeBufferPointer { (p) throws(JSONParseError) -> String in
                        try makeString(p, ascii: false, at: start)
                    }
                    return s
                }
                if b < 0x20 { throw error("unescaped control character in a string") }
                if b != UInt8(ascii: "\\") {
                    scratch.append(b)
                    index += 1
                    continue
                }
                index += 1
                guard index < bytes.count else { break }
                let e = bytes[index]
                index += 1
                switch e {
                case UInt8(ascii: "\""): scratch.append(0x22)
                case UInt8(ascii: "\\"): scratch.append(0x5C)
                case UInt8(ascii: "/"): scratch.append(0x2F)
                case UInt8(ascii: "b"): scratch.append(0x08)
                case UInt8(ascii: "f"): scratch.append(0x0C)
                case UInt8(ascii: "n"): scratch.append(0x0A)
                case UInt8(ascii: "r"): scratch.append(0x0D)
                case UInt8(ascii: "t"): scratch.append(0x09)
                case UInt8(ascii: "u"): appendScalar(try parseUnicodeEscape())
                default:
                    index -= 1
                    throw error("invalid escape '\\\(Self.printable(e))'")
                }
            }
            throw error("unterminated string")
        }

        /// After `\u`: one scalar, combining a surrogate pair when one follows.
        mutating func parseUnicodeEscape() throws(JSONParseError) -> Unicode.Scalar {
            let high = try hex4()
            if (0xD800..<0xDC00).contains(high) {
                if bytes.count - index >= 6, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") {
                    let save = index
                    index += 2
                    let low = try hex4()
                    if (0xDC00..<0xE000).contains(low) {
                        return Unicode.Scalar(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))!
                    }
                    index = save
                }
                return "\u{FFFD}"
            }
            return Unicode.Scalar(high) ?? "\u{FFFD}"
        }

        mutating func hex4() throws(JSONParseError) -> UInt32 {
            guard bytes.count - index >= 4 else { throw error("truncated \\u escape") }
            var v: UInt32 = 0
            for _ in 0..<4 {
                let c = bytes[index]
                let d: UInt8
                switch c {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): d = c - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): d = c - UInt8(ascii: "a") + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): d = c - UInt8(ascii: "A") + 10
                default: throw error("invalid \\u escape")
                }
                v = v << 4 | UInt32(d)
                index += 1
            }
            return v
        }

        mutating func appendScalar(_ scalar: Unicode.Scalar) {
            for unit in UTF8.encode(scalar)! { scratch.append(unit) }
        }

        /// Validating UTF-8 costs about as much as the rest of the parse; pure ASCII needs none.
        func makeString(
            _ utf8: UnsafeBufferPointer<UInt8>, ascii: Bool, at offset: Int
        ) throws(JSONParseError)
            -> String
        {
            if ascii { return String(decoding: utf8, as: UTF8.self) }
            guard let s = String(validating: utf8, as: UTF8.self) else {
                throw JSONParseError(reason: "invalid UTF-8 in a string", offset: offset)
            }
            return s
        }

        mutating func parseNumber() throws(JSONParseError) -> JSONValue {
            let start = index
            var negative = false
            if bytes[index] == UInt8(ascii: "-") {
                negative = true
                index += 1
            }
            guard index < bytes.count, Self.isDigit(bytes[index]) else { throw error("invalid number") }
            var magnitude: UInt64 = 0
            var overflow = false
            if bytes[index] == UInt8(ascii: "0") {
                index += 1
            } else {
                while index < bytes.count, Self.isDigit(bytes[index]) {
                    let (m1, o1) = magnitude.multipliedReportingOverflow(by: 10)
                    let (m2, o2) = m1.addingReportingOverflow(UInt64(bytes[index] - UInt8(ascii: "0")))
                    overflow = overflow || o1 || o2
                    magnitude = m2
                    index += 1
                }
            }
            var integral = true
            if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
                integral = false
                index += 1
                guard index < bytes.count, Self.isDigit(bytes[index]) else { throw error("invalid number") }
                while index < bytes.count, Self.isDigit(bytes[index]) { index += 1 }
            }
            if index < bytes.count, bytes[index] | 0x20 == UInt8(ascii: "e") {
                integral = false
                index += 1
                if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") {
                    index += 1
                }
                guard index < bytes.count, Self.isDigit(bytes[index]) else { throw error("invalid number") }
                while index < bytes.count, Self.isDigit(bytes[index]) { index += 1 }
            }
            if integral && !overflow {
                if !negative {
                    return magnitude <= UInt64(Int64.max) ? .int(Int64(magnitude)) : .uint(magnitude)
                }
                if magnitude <= UInt64(Int64.max) { return .int(-Int64(magnitude)) }
                if magnitude == UInt64(Int64.max) + 1 { return .int(Int64.min) }
            }
            let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
            guard let d = Double(text), d.isFinite else {
                index = start
                throw error("number out of range")
            }
            return .double(d)
        }

        @inline(__always) static func isDigit(_ b: UInt8) -> Bool { b &- UInt8(ascii: "0") < 10 }
    }
}
