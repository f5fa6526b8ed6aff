/// A pull reader for request bodies (RFC 8259): the caller walks the document and reads the few
/// fields it needs; everything else is skipped, but still validated, so malformed JSON anywhere
/// is a 400. This replaces `JSONDecoder`, which cost a sixth of the mock's CPU per chat request:
/// keys arrive as (usually small, unallocated) `String`s, and values are never put in a tree.
///
/// A reader borrows the bytes: use it inside `ByteBuffer.withUnsafeReadableBytes`.
struct JSONReader {
    enum Failure: Error, Equatable {
        /// Not JSON at all; `detail` says where it went wrong.
        case malformed(String)
        /// Valid JSON with a field of the wrong type, e.g. `("messages", "an array")`.
        case wrongType(field: String, expected: String)
        /// A required field is absent, e.g. `"messages[0].role"`.
        case missing(field: String)
    }

    enum Kind: Equatable {
        case object, array, string, number, bool, null
    }

    /// Nesting deeper than this is rejected, so `[[[[…` cannot exhaust the stack.
    static let depthMax = 64

    private let bytes: UnsafeRawBufferPointer
    private var index = 0
    private var depth = 0

    init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    /// Reads one top-level value with `read`, then requires the end of the input.
    static func parse<T>(
        _ bytes: UnsafeRawBufferPointer, _ read: (inout JSONReader) throws(Failure) -> T
    ) throws(Failure) -> T {
        var reader = JSONReader(bytes)
        let value = try read(&reader)
        reader.skipWhitespace()
        guard reader.index == bytes.count else { throw reader.malformed("unexpected data after the JSON value") }
        return value
    }

    // MARK: Looking ahead

    /// The kind of the next value, without consuming it.
    mutating func peek() throws(Failure) -> Kind {
        skipWhitespace()
        guard index < bytes.count else { throw malformed("unexpected end of input") }
        switch bytes[index] {
        case UInt8(ascii: "{"): return .object
        case UInt8(ascii: "["): return .array
        case UInt8(ascii: "\""): return .string
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number
        case UInt8(ascii: "t"), UInt8(ascii: "f"): return .bool
        case UInt8(ascii: "n"): return .null
        default: throw malformed("unexpected character")
        }
    }

    /// Consumes a `null` if one is next.
    mutating func readNull() throws(Failure) -> Bool {
        guard try peek() == .null else { return false }
        try expectLiteral("null")
        return true
    }

    // MARK: Containers

    /// Reads an object, calling `member` with each key; `member` must read or skip the value.
    mutating func readObject(
        _ field: @autoclosure () -> String, _ member: (inout JSONReader, String) throws(Failure) -> Void
    ) throws(Failure) {
        guard try peek() == .object else { throw .wrongType(field: field(), expected: "an object") }
        try enter()
        index += 1
        skipWhitespace()
        if consume(UInt8(ascii: "}")) {
            depth -= 1
            return
        }
        while true {
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw malformed("expected a key") }
            let key = try readStringLiteral()
            skipWhitespace()
            guard consume(UInt8(ascii: ":")) else { throw malformed("expected ':'") }
            try member(&self, key)
            skipWhitespace()
            if consume(UInt8(ascii: ",")) { continue }
            guard consume(UInt8(ascii: "}")) else { throw malformed("expected ',' or '}'") }
            depth -= 1
            return
        }
    }

    /// Reads an array, calling `element` with each index; `element` must read or skip the value.
    mutating func readArray(
        _ field: @autoclosure () -> String, _ element: (inout JSONReader, Int) throws(Failure) -> Void
    ) throws(Failure) {
        guard try peek() == .array else { throw .wrongType(field: field(), expected: "an array") }
        try enter()
        index += 1
        skipWhitespace()
        if consume(UInt8(ascii: "]")) {
            depth -= 1
            return
        }
        var count = 0
        while true {
            try element(&self, count)
            count += 1
            skipWhitespace()
            if consume(UInt8(ascii: ",")) { continue }
            guard consume(UInt8(ascii: "]")) else { throw malformed("expected ',' or ']'") }
            depth -= 1
            return
        }
    }

    // MARK: Scalars (`null` reads as `nil`)

    mutating func readString(_ field: @autoclosure () -> String) throws(Failure) -> String? {
        switch try peek() {
        case .null:
            try expectLiteral("null")
            return nil
        case .string: return try readStringLiteral()
        default: throw .wrongType(field: field(), expected: "a string")
        }
    }

    mutating func readBool(_ field: @autoclosure () -> String) throws(Failure) -> Bool? {
        switch try peek() {
        case .null:
            try expectLiteral("null")
            return nil
        case .bool:
            if bytes[index] == UInt8(ascii: "t") {
                try expectLiteral("true")
                return true
            }
            try expectLiteral("false")
            return false
        default: throw .wrongType(field: field(), expected: "a boolean")
        }
    }

    /// An integer; `64.0` and `1e3` count, `1.5` does not.
    mutating func readInt(_ field: @autoclosure () -> String) throws(Failure) -> Int? {
        switch try peek() {
        case .null:
            try expectLiteral("null")
            return nil
        case .number:
            let start = index
            let integral = try skipNumber()
            let text = UnsafeRawBufferPointer(rebasing: bytes[start..<index])
            if integral, let value = Int(String(decoding: text, as: UTF8.self)) { return value }
            if let value = Double(String(decoding: text, as: UTF8.self)), value.rounded() == value,
                let exact = Int(exactly: value)
            {
                return exact
            }
            throw .wrongType(field: field(), expected: "an integer")
        default: throw .wrongType(field: field(), expected: "an integer")
        }
    }

    /// Skips any value, checking that it is well-formed.
    mutating func skipValue() throws(Failure) {
        switch try peek() {
        case .object: try readObject("") { reader, _ throws(Failure) in try reader.skipValue() }
        case .array: try readArray("") { reader, _ throws(Failure) in try reader.skipValue() }
        case .string: try skipStringLiteral()
        case .number: _ = try skipNumber()
        case .bool: try expectLiteral(bytes[index] == UInt8(ascii: "t") ? "true" : "false")
        case .null: try expectLiteral("null")
        }
    }

    // MARK: Lexing

    private mutating func enter() throws(Failure) {
        depth += 1
        guard depth <= Self.depthMax else { throw malformed("nested deeper than \(Self.depthMax)") }
    }

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: " "), UInt8(ascii: "\n"), UInt8(ascii: "\r"), UInt8(ascii: "\t"): index += 1
            default: return
            }
        }
    }

    private mutating func consume(_ byte: UInt8) -> Bool {
        guard index < bytes.count, bytes[index] == byte else { return false }
        index += 1
        return true
    }

    private mutating func expectLiteral(_ literal: StaticString) throws(Failure) {
        let count = literal.utf8CodeUnitCount
        guard bytes.count - index >= count,
            UnsafeRawBufferPointer(rebasing: bytes[index..<index + count]).elementsEqual(
                UnsafeRawBufferPointer(start: literal.utf8Start, count: count))
        else { throw malformed("invalid literal") }
        index += count
    }

    /// `-? (0 | [1-9][0-9]*) (.[0-9]+)? ([eE][+-]?[0-9]+)?`; returns whether it had no fraction or exponent.
    private mutating func skipNumber() throws(Failure) -> Bool {
        _ = consume(UInt8(ascii: "-"))
        if consume(UInt8(ascii: "0")) {
            // A leading zero stands alone.
        } else {
            guard skipDigits() > 0 else { throw malformed("invalid number") }
        }
        var integral = true
        if consume(UInt8(ascii: ".")) {
            integral = false
            guard skipDigits() > 0 else { throw malformed("invalid number") }
        }
        if consume(UInt8(ascii: "e")) || consume(UInt8(ascii: "E")) {
            integral = false
            if !consume(UInt8(ascii: "+")) { _ = consume(UInt8(ascii: "-")) }
            guard skipDigits() > 0 else { throw malformed("invalid number") }
        }
        return integral
    }

    private mutating func skipDigits() -> Int {
        let start = index
        while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) { index += 1 }
        return index - start
    }

    private mutating func skipStringLiteral() throws(Failure) {
        index += 1
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            if byte == UInt8(ascii: "\"") { return }
            if byte == UInt8(ascii: "\\") {
                index -= 1
                _ = try readEscape()
            } else if byte < 0x20 {
                throw malformed("control character in string")
            }
        }
        throw malformed("unterminated string")
    }

    /// Reads a string literal at `index` (the opening quote). Without escapes, one copy of the bytes.
    private mutating func readStringLiteral() throws(Failure) -> String {
        index += 1
        let start = index
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
                index += 1
                return text
            }
            if byte == UInt8(ascii: "\\") { break }
            guard byte >= 0x20 else { throw malformed("control character in string") }
            index += 1
        }
        var unescaped = Array(UnsafeRawBufferPointer(rebasing: bytes[start..<index]))
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                index += 1
                return String(decoding: unescaped, as: UTF8.self)
            }
            if byte == UInt8(ascii: "\\") {
                UTF8.encode(try readEscape()) { unescaped.append($0) }
            } else {
                guard byte >= 0x20 else { throw malformed("control character in string") }
                unescaped.append(byte)
                index += 1
            }
        }
        throw malformed("unterminated string")
    }

    /// Reads the escape at `index` (the backslash). `\uD83D\uDE00` surrogate pairs join; a lone
    /// surrogate becomes U+FFFD.
    private mutating func readEscape() throws(Failure) -> Unicode.Scalar {
        index += 1
        guard index < bytes.count else { throw malformed("unterminated string") }
        let byte = bytes[index]
        index += 1
        switch byte {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): return Unicode.Scalar(byte)
        case UInt8(ascii: "b"): return "\u{08}"
        case UInt8(ascii: "f"): return "\u{0C}"
        case UInt8(ascii: "n"): return "\n"
        case UInt8(ascii: "r"): return "\r"
        case UInt8(ascii: "t"): return "\t"
        case UInt8(ascii: "u"):
            var scalar = UInt32(try readHex4())
            if (0xD800..<0xDC00).contains(scalar), bytes.count - index >= 6, bytes[index] == UInt8(ascii: "\\"),
                bytes[index + 1] == UInt8(ascii: "u")
            {
                let save = index
                index += 2
                let low = UInt32(try readHex4())
                if (0xDC00..<0xE000).contains(low) {
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else {
                    index = save
                }
            }
            return Unicode.Scalar(scalar) ?? "\u{FFFD}"
        default: throw malformed("invalid escape")
        }
    }

    private mutating func readHex4() throws(Failure) -> UInt16 {
        guard bytes.count - index >= 4 else { throw malformed("invalid \\u escape") }
        var value: UInt16 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw malformed("invalid \\u escape")
            }
            value = value << 4 | UInt16(digit)
            index += 1
        }
        return value
    }

    private func malformed(_ detail: String) -> Failure {
        .malformed("\(detail) at byte \(index)")
    }
}
