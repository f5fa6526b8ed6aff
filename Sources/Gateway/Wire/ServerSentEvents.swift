import EventLog
import Foundation

/// One server-sent event.
public struct SSEEvent: Sendable, Equatable {
    public var event: String?
    public var data: String

    public init(event: String? = nil, data: String) {
        self.event = event
        self.data = data
    }

    /// The event on the wire: `event: name\n` when named, `data: …` lines, a blank line.
    public var bytes: [UInt8] {
        var out = ""
        if let event { out += "event: \(event)\n" }
        for line in data.split(separator: "\n", omittingEmptySubsequences: false) { out += "data: \(line)\n" }
        out += "\n"
        return Array(out.utf8)
    }
}

/// An incremental `text/event-stream` parser: feed bytes as they arrive, in any split, and take
/// whole events. Handles `\n`, `\r\n` and `\r` line ends, multi-line data and `:` comments.
public struct SSEParser: Sendable {
    private var buffer: [UInt8] = []
    private var scanned = 0
    private var event: String?
    private var data: [String] = []
    /// Largest event accepted; a stream that exceeds it is broken or hostile.
    public let maxEventBytes: Int

    public init(maxEventBytes: Int = 8 << 20) { self.maxEventBytes = maxEventBytes }

    public struct Overflow: Error {}

    /// Adds bytes; returns the events they completed.
    public mutating func feed(_ bytes: some Collection<UInt8>) throws -> [SSEEvent] {
        buffer.append(contentsOf: bytes)
        var events: [SSEEvent] = []
        var lineStart = 0
        var i = scanned
        while i < buffer.count {
            let byte = buffer[i]
            if byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r") {
                // A `\r` at the very end may be the first half of `\r\n`: wait for more.
                if byte == UInt8(ascii: "\r") && i + 1 == buffer.count { break }
                let line = buffer[lineStart..<i]
                if let e = takeLine(line) { events.append(e) }
                if byte == UInt8(ascii: "\r") && buffer[i + 1] == UInt8(ascii: "\n") { i += 1 }
                lineStart = i + 1
            }
            i += 1
        }
        buffer.removeFirst(lineStart)
        scanned = buffer.count - (buffer.last == UInt8(ascii: "\r") ? 1 : 0)
        if buffer.count > maxEventBytes { throw Overflow() }
        return events
    }

    /// The last event when the stream ends without its blank line.
    public mutating func finish() -> SSEEvent? {
        if !buffer.isEmpty {
            let line = buffer[...]
            buffer = []
            scanned = 0
            _ = takeLine(line)
        }
        return dispatch()
    }

    private mutating func takeLine(_ line: ArraySlice<UInt8>) -> SSEEvent? {
        if line.isEmpty { return dispatch() }
        if line.first == UInt8(ascii: ":") { return nil }
        let colon = line.firstIndex(of: UInt8(ascii: ":"))
        let field = String(decoding: line[line.startIndex..<(colon ?? line.endIndex)], as: UTF8.self)
        var value = colon.map { line[($0 + 1)...] } ?? []
        if value.first == UInt8(ascii: " ") { value = value.dropFirst() }
        switch field {
        case "event": event = String(decoding: value, as: UTF8.self)
        case "data": data.append(String(decoding: value, as: UTF8.self))
        default: break
        }
        return nil
    }

    private mutating func dispatch() -> SSEEvent? {
        defer {
            event = nil
            data = []
        }
        guard !data.isEmpty || event != nil else { return nil }
        return SSEEvent(event: event, data: data.joined(separator: "\n"))
    }
}
