import NIOCore

/// Hand-written JSON output: responses are a fixed skeleton with a few values, so writing them
/// straight into one `ByteBuffer` costs one allocation per response instead of an encoder's tree.
extension ByteBuffer {
    /// Writes `text` as a JSON string (RFC 8259 §7): `"` and `\` escaped, control characters
    /// as `\n`, `\r`, `\t` or `\u00XX`; everything else, UTF-8 included, as is.
    mutating func writeJSONString(_ text: some StringProtocol) {
        writeInteger(UInt8(ascii: "\""))
        let written: Void? = text.utf8.withContiguousStorageIfAvailable { writeJSONEscaped($0) }
        if written == nil {
            var copy = String(text)
            copy.withUTF8 { writeJSONEscaped($0) }
        }
        writeInteger(UInt8(ascii: "\""))
    }

    private mutating func writeJSONEscaped(_ bytes: UnsafeBufferPointer<UInt8>) {
        var runStart = 0
        for i in 0..<bytes.count {
            let byte = bytes[i]
            guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else { continue }
            if runStart < i { writeBytes(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: bytes[runStart..<i]))) }
            switch byte {
            case UInt8(ascii: "\""): writeStaticString("\\\"")
            case UInt8(ascii: "\\"): writeStaticString("\\\\")
            case UInt8(ascii: "\n"): writeStaticString("\\n")
            case UInt8(ascii: "\r"): writeStaticString("\\r")
            case UInt8(ascii: "\t"): writeStaticString("\\t")
            default:
                writeStaticString("\\u00")
                writeInteger(Self.hexDigits[Int(byte >> 4)])
                writeInteger(Self.hexDigits[Int(byte & 0xF)])
            }
            runStart = i + 1
        }
        if runStart < bytes.count {
            writeBytes(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: bytes[runStart...])))
        }
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// Writes `value` or `null`.
    mutating func writeJSONStringOrNull(_ value: String?) {
        if let value { writeJSONString(value) } else { writeStaticString("null") }
    }

    mutating func writeJSONInt(_ value: some BinaryInteger) {
        writeString(String(value))
    }

    /// Writes `{"key":count,…}` with the keys sorted, so output is stable.
    mutating func writeJSONCounts(_ counts: [String: Int]) {
        writeStaticString("{")
        for (i, key) in counts.keys.sorted().enumerated() {
            if i > 0 { writeStaticString(",") }
            writeJSONString(key)
            writeStaticString(":")
            writeJSONInt(counts[key]!)
        }
        writeStaticString("}")
    }
}
