/// The deterministic answer to a conversation: the same request always gets the same text and
/// token counts, so tests can assert on them and a replay compares byte for byte.
///
/// Text: `Mock reply to: ` and the first 40 characters of the last user message. Tokens: about
/// 4 bytes of UTF-8 per token, at least 1, for the prompt (all message contents) and the reply.
/// A `max_tokens` below the reply's count cuts the text to `4 × max_tokens` bytes and reports a
/// length stop (`finish_reason: "length"`, `stop_reason: "max_tokens"`).
struct MockReply: Sendable {
    static let prefix = "Mock reply to: "
    static let quotedCharactersMax = 40
    static let wordsPerStreamEvent = 3

    let text: String
    let promptTokens: Int
    let completionTokens: Int
    /// True when `max_tokens` cut the reply.
    let truncated: Bool

    init(lastUserText: String, promptBytes: Int, maxTokens: Int?) {
        var text = Self.prefix + lastUserText.prefix(Self.quotedCharactersMax)
        var completion = Self.tokens(bytes: text.utf8.count)
        var truncated = false
        if let maxTokens, maxTokens < completion {
            text = Self.prefix(of: text, bytesMax: maxTokens * 4)
            completion = maxTokens
            truncated = true
        }
        self.text = text
        self.promptTokens = Self.tokens(bytes: promptBytes)
        self.completionTokens = completion
        self.truncated = truncated
    }

    static func tokens(bytes: Int) -> Int { max(1, bytes / 4) }

    /// The longest prefix of whole characters within `bytesMax` bytes of UTF-8.
    private static func prefix(of text: String, bytesMax: Int) -> String {
        var used = 0
        var end = text.startIndex
        for index in text.indices {
            let size = text[index].utf8.count
            if used + size > bytesMax { break }
            used += size
            end = text.index(after: index)
        }
        return String(text[..<end])
    }

    /// The content events of a stream: pieces of a few words each (with their trailing spaces),
    /// which concatenate to `text`.
    var streamPieces: [Substring] {
        var pieces: [Substring] = []
        var start = text.startIndex
        var words = 0
        var inWord = false
        for index in text.indices {
            let isSpace = text[index].isWhitespace
            if !isSpace && !inWord {
                if words == Self.wordsPerStreamEvent {
                    pieces.append(text[start..<index])
                    start = index
                    words = 0
                }
                words += 1
            }
            inWord = !isSpace
        }
        if start < text.endIndex { pieces.append(text[start...]) }
        return pieces
    }
}

/// A message's `content`: a string, or an array of parts of which only the text parts count
/// (`{"type":"text","text":…}`; images, tool calls and tool results are accepted and ignored).
enum MessageContent: Sendable {
    case text(String)
    /// The texts of the text parts.
    case parts([String])

    /// Reads a content value; JSON `null` (an assistant message with tool calls) reads as `nil`.
    static func read(_ json: inout JSONReader, field: String) throws(JSONReader.Failure) -> MessageContent? {
        switch try json.peek() {
        case .null:
            _ = try json.readNull()
            return nil
        case .string:
            return try json.readString(field).map(MessageContent.text)
        case .array:
            var texts: [String] = []
            try json.readArray(field) { json, index throws(JSONReader.Failure) in
                try json.readObject("\(field)[\(index)]") { json, key throws(JSONReader.Failure) in
                    if key == "text", try json.peek() == .string, let text = try json.readString(key) {
                        texts.append(text)
                    } else {
                        try json.skipValue()
                    }
                }
            }
            return .parts(texts)
        default:
            throw .wrongType(field: field, expected: "a string or an array of content parts")
        }
    }

    var text: String {
        switch self {
        case .text(let text): text
        case .parts(let texts): texts.joined(separator: "\n")
        }
    }

    var byteCount: Int {
        switch self {
        case .text(let text): text.utf8.count
        case .parts(let texts): texts.reduce(0) { $0 + $1.utf8.count }
        }
    }
}
