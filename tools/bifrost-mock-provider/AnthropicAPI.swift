import NIOCore

/// The Anthropic Messages API (`POST /v1/messages`): request shape (only the fields the mock
/// reads) and responses in the shapes the `anthropic` Python SDK parses, streaming included.
enum AnthropicAPI {
    struct MessagesRequest: Sendable {
        var model: String?
        var maxTokens: Int?
        var messages: [Message]?
        var system: MessageContent?
        var stream: Bool?

        struct Message: Sendable {
            var role: String
            var content: MessageContent

            static func read(_ json: inout JSONReader, index: Int) throws(JSONReader.Failure) -> Message {
                var role: String?
                var content: MessageContent?
                try json.readObject("messages.\(index)") { json, key throws(JSONReader.Failure) in
                    switch key {
                    case "role": role = try json.readString("messages.\(index).role")
                    case "content": content = try MessageContent.read(&json, field: "messages.\(index).content")
                    default: try json.skipValue()
                    }
                }
                guard let role else { throw .missing(field: "messages.\(index).role") }
                guard let content else { throw .missing(field: "messages.\(index).content") }
                return Message(role: role, content: content)
            }
        }

        static func read(_ json: inout JSONReader) throws(JSONReader.Failure) -> MessagesRequest {
            var request = MessagesRequest()
            try json.readObject("body") { json, key throws(JSONReader.Failure) in
                switch key {
                case "model": request.model = try json.readString(key)
                case "max_tokens": request.maxTokens = try json.readInt(key)
                case "system": request.system = try MessageContent.read(&json, field: key)
                case "stream": request.stream = try json.readBool(key)
                case "messages":
                    if try json.readNull() { return }
                    var messages: [Message] = []
                    try json.readArray(key) { json, index throws(JSONReader.Failure) in
                        messages.append(try Message.read(&json, index: index))
                    }
                    request.messages = messages
                default: try json.skipValue()
                }
            }
            return request
        }
    }

    static func message(_ request: MessagesRequest, id: UInt64) throws(MockError) -> Reply {
        guard let model = request.model, !model.isEmpty else { throw .missing("model", .anthropic) }
        guard let maxTokens = request.maxTokens else { throw .missing("max_tokens", .anthropic) }
        guard maxTokens >= 1 else {
            throw .invalid("max_tokens", "Input should be greater than or equal to 1", .anthropic)
        }
        guard let messages = request.messages else { throw .missing("messages", .anthropic) }
        guard !messages.isEmpty else { throw .invalid("messages", "at least one message is required", .anthropic) }
        let lastUser = messages.last { $0.role == "user" }?.content.text ?? ""
        let promptBytes = messages.reduce(request.system?.byteCount ?? 0) { $0 + $1.content.byteCount }
        let reply = MockReply(lastUserText: lastUser, promptBytes: promptBytes, maxTokens: maxTokens)
        if request.stream == true {
            return Reply(body: .events(events(id: id, model: model, reply: reply)), model: model)
        }
        return Reply(body: .json(message(id: id, model: model, reply: reply)), model: model)
    }

    /// `{"id":"msg_…","type":"message","role":"assistant","model":…,"content":[{"type":"text","text":…}],
    /// "stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":N,"output_tokens":M}}`
    static func message(id: UInt64, model: String, reply: MockReply) -> ByteBuffer {
        var out = ByteBufferAllocator().buffer(capacity: 300 + model.utf8.count + reply.text.utf8.count)
        writeMessageHead(id: id, model: model, into: &out)
        out.writeStaticString(#","content":[{"type":"text","text":"#)
        out.writeJSONString(reply.text)
        out.writeStaticString(#"}],"stop_reason":"#)
        out.writeStaticString(reply.truncated ? #""max_tokens""# : #""end_turn""#)
        out.writeStaticString(#","stop_sequence":null,"usage":{"input_tokens":"#)
        out.writeJSONInt(reply.promptTokens)
        out.writeStaticString(#","output_tokens":"#)
        out.writeJSONInt(reply.completionTokens)
        out.writeStaticString("}}")
        return out
    }

    /// The event stream, each event `event: <name>\ndata: <json>\n\n`: `message_start` (empty
    /// content, input tokens), `content_block_start`, a `content_block_delta` per few words,
    /// `content_block_stop`, `message_delta` (stop reason, output tokens), `message_stop`.
    static func events(id: UInt64, model: String, reply: MockReply) -> EventStream {
        var head = ByteBufferAllocator().buffer(capacity: 400 + model.utf8.count)
        head.writeStaticString("event: message_start\ndata: {\"type\":\"message_start\",\"message\":")
        writeMessageHead(id: id, model: model, into: &head)
        head.writeStaticString(#","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":"#)
        head.writeJSONInt(reply.promptTokens)
        head.writeStaticString(#","output_tokens":0}}}"#)
        head.writeStaticString("\n\nevent: content_block_start\ndata: ")
        head.writeStaticString(#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#)
        head.writeStaticString("\n\n")

        let pieces = reply.streamPieces.map { piece in
            var event = ByteBufferAllocator().buffer(capacity: 120 + piece.utf8.count)
            event.writeStaticString("event: content_block_delta\ndata: ")
            event.writeStaticString(#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"#)
            event.writeJSONString(piece)
            event.writeStaticString("}}\n\n")
            return event
        }

        var tail = ByteBufferAllocator().buffer(capacity: 320)
        tail.writeStaticString("event: content_block_stop\ndata: ")
        tail.writeStaticString(#"{"type":"content_block_stop","index":0}"#)
        tail.writeStaticString("\n\nevent: message_delta\ndata: ")
        tail.writeStaticString(#"{"type":"message_delta","delta":{"stop_reason":"#)
        tail.writeStaticString(reply.truncated ? #""max_tokens""# : #""end_turn""#)
        tail.writeStaticString(#","stop_sequence":null},"usage":{"output_tokens":"#)
        tail.writeJSONInt(reply.completionTokens)
        tail.writeStaticString("}}\n\nevent: message_stop\ndata: ")
        tail.writeStaticString(#"{"type":"message_stop"}"#)
        tail.writeStaticString("\n\n")
        return EventStream(head: head, pieces: pieces, tail: tail)
    }

    /// `{"id":"msg_mock…","type":"message","role":"assistant","model":…` (the object stays open).
    private static func writeMessageHead(id: UInt64, model: String, into out: inout ByteBuffer) {
        out.writeStaticString(#"{"id":"msg_mock"#)
        out.writeJSONInt(id)
        out.writeStaticString(#"","type":"message","role":"assistant","model":"#)
        out.writeJSONString(model)
    }
}
