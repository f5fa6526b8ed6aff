import Foundation
import NIOCore

/// The OpenAI endpoints: request shapes (only the fields the mock reads) and response rendering
/// in the shapes the `openai` Python SDK parses.
enum OpenAIAPI {
    /// The models `GET /v1/models` lists. Chat and embeddings accept any model name.
    static let models = [
        "gpt-4o-mini", "gpt-4o", "text-embedding-3-small", "claude-3-5-sonnet-latest", "claude-3-5-haiku-latest",
    ]
    /// A fixed `created` for the listed models (2024-05-13), so the listing never changes.
    static let modelsCreated = 1_715_558_400
    static let embeddingDimensionsDefault = 8
    static let embeddingDimensionsMax = 4096

    // MARK: Chat completions

    struct ChatRequest: Sendable {
        var model: String?
        var messages: [Message]?
        var stream: Bool?
        var maxTokens: Int?
        var maxCompletionTokens: Int?
        /// `stream_options.include_usage`
        var includeUsage: Bool?

        struct Message: Sendable {
            var role: String
            var content: MessageContent?

            static func read(_ json: inout JSONReader, index: Int) throws(JSONReader.Failure) -> Message {
                var role: String?
                var content: MessageContent?
                try json.readObject("messages[\(index)]") { json, key throws(JSONReader.Failure) in
                    switch key {
                    case "role": role = try json.readString("messages[\(index)].role")
                    case "content": content = try MessageContent.read(&json, field: "messages[\(index)].content")
                    default: try json.skipValue()
                    }
                }
                guard let role else { throw .missing(field: "messages[\(index)].role") }
                return Message(role: role, content: content)
            }
        }

        static func read(_ json: inout JSONReader) throws(JSONReader.Failure) -> ChatRequest {
            var request = ChatRequest()
            try json.readObject("body") { json, key throws(JSONReader.Failure) in
                switch key {
                case "model": request.model = try json.readString(key)
                case "messages":
                    if try json.readNull() { return }
                    var messages: [Message] = []
                    try json.readArray(key) { json, index throws(JSONReader.Failure) in
                        messages.append(try Message.read(&json, index: index))
                    }
                    request.messages = messages
                case "stream": request.stream = try json.readBool(key)
                case "max_tokens": request.maxTokens = try json.readInt(key)
                case "max_completion_tokens": request.maxCompletionTokens = try json.readInt(key)
                case "stream_options":
                    if try json.readNull() { return }
                    try json.readObject(key) { json, option throws(JSONReader.Failure) in
                        if option == "include_usage" {
                            request.includeUsage = try json.readBool("stream_options.include_usage")
                        } else {
                            try json.skipValue()
                        }
                    }
                default: try json.skipValue()
                }
            }
            return request
        }
    }

    static func chatCompletion(_ request: ChatRequest, id: UInt64, created: Int64) throws(MockError) -> Reply {
        guard let model = request.model, !model.isEmpty else {
            throw MockError(status: 400, message: "you must provide a model parameter", param: "model")
        }
        guard let messages = request.messages else { throw .missing("messages", .openAI) }
        guard !messages.isEmpty else {
            throw .invalid("messages", "empty array. Expected an array with minimum length 1.", .openAI)
        }
        let maxTokens = request.maxCompletionTokens ?? request.maxTokens
        if let maxTokens, maxTokens < 1 {
            let field = request.maxCompletionTokens == nil ? "max_tokens" : "max_completion_tokens"
            throw .invalid(field, "integer below minimum value. Expected a value >= 1, but got \(maxTokens).", .openAI)
        }
        let lastUser = messages.last { $0.role == "user" }?.content?.text ?? ""
        let promptBytes = messages.reduce(0) { $0 + ($1.content?.byteCount ?? 0) }
        let reply = MockReply(lastUserText: lastUser, promptBytes: promptBytes, maxTokens: maxTokens)
        if request.stream == true {
            let includeUsage = request.includeUsage == true
            return Reply(
                body: .events(chunks(id: id, created: created, model: model, reply: reply, includeUsage: includeUsage)),
                model: model)
        }
        return Reply(body: .json(completion(id: id, created: created, model: model, reply: reply)), model: model)
    }

    /// `{"id":"chatcmpl-…","object":"chat.completion","created":…,"model":…,"choices":[{"index":0,
    /// "message":{"role":"assistant","content":…},"finish_reason":…,"logprobs":null}],"usage":{…}}`
    static func completion(id: UInt64, created: Int64, model: String, reply: MockReply) -> ByteBuffer {
        var out = ByteBufferAllocator().buffer(capacity: 320 + model.utf8.count + reply.text.utf8.count)
        out.writeStaticString(#"{"id":"chatcmpl-mock"#)
        out.writeJSONInt(id)
        out.writeStaticString(#"","object":"chat.completion","created":"#)
        out.writeJSONInt(created)
        out.writeStaticString(#","model":"#)
        out.writeJSONString(model)
        out.writeStaticString(#","choices":[{"index":0,"message":{"role":"assistant","content":"#)
        out.writeJSONString(reply.text)
        out.writeStaticString(#","refusal":null},"finish_reason":"#)
        out.writeStaticString(reply.truncated ? #""length""# : #""stop""#)
        out.writeStaticString(#","logprobs":null}],"usage":"#)
        writeUsage(reply, into: &out)
        out.writeStaticString("}")
        return out
    }

    /// The chunks of a streamed completion, each `data: <json>\n\n`: the role, the content a few
    /// words at a time, the finish reason, the usage (`"choices":[]`) when
    /// `stream_options.include_usage` is set, and `data: [DONE]`.
    static func chunks(
        id: UInt64, created: Int64, model: String, reply: MockReply, includeUsage: Bool
    )
        -> EventStream
    {
        var prefix = ByteBufferAllocator().buffer(capacity: 120 + model.utf8.count)
        prefix.writeStaticString(#"data: {"id":"chatcmpl-mock"#)
        prefix.writeJSONInt(id)
        prefix.writeStaticString(#"","object":"chat.completion.chunk","created":"#)
        prefix.writeJSONInt(created)
        prefix.writeStaticString(#","model":"#)
        prefix.writeJSONString(model)
        prefix.writeStaticString(#","choices":["#)

        var head = prefix
        head.writeStaticString(
            #"{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}"#)
        head.writeStaticString("\n\n")

        let pieces = reply.streamPieces.map { piece in
            var event = prefix
            event.writeStaticString(#"{"index":0,"delta":{"content":"#)
            event.writeJSONString(piece)
            event.writeStaticString(#"},"logprobs":null,"finish_reason":null}]}"#)
            event.writeStaticString("\n\n")
            return event
        }

        var tail = prefix
        tail.writeStaticString(#"{"index":0,"delta":{},"logprobs":null,"finish_reason":"#)
        tail.writeStaticString(reply.truncated ? #""length""# : #""stop""#)
        tail.writeStaticString("}]}\n\n")
        if includeUsage {
            tail.writeImmutableBuffer(prefix)
            tail.writeStaticString(#"],"usage":"#)
            writeUsage(reply, into: &tail)
            tail.writeStaticString("}\n\n")
        }
        tail.writeStaticString("data: [DONE]\n\n")
        return EventStream(head: head, pieces: pieces, tail: tail)
    }

    private static func writeUsage(_ reply: MockReply, into out: inout ByteBuffer) {
        out.writeStaticString(#"{"prompt_tokens":"#)
        out.writeJSONInt(reply.promptTokens)
        out.writeStaticString(#","completion_tokens":"#)
        out.writeJSONInt(reply.completionTokens)
        out.writeStaticString(#","total_tokens":"#)
        out.writeJSONInt(reply.promptTokens + reply.completionTokens)
        out.writeStaticString("}")
    }

    // MARK: Embeddings

    struct EmbeddingsRequest: Sendable {
        var model: String?
        var input: EmbeddingInput?
        var dimensions: Int?
        var encodingFormat: String?

        static func read(_ json: inout JSONReader) throws(JSONReader.Failure) -> EmbeddingsRequest {
            var request = EmbeddingsRequest()
            try json.readObject("body") { json, key throws(JSONReader.Failure) in
                switch key {
                case "model": request.model = try json.readString(key)
                case "input": request.input = try EmbeddingInput.read(&json)
                case "dimensions": request.dimensions = try json.readInt(key)
                case "encoding_format": request.encodingFormat = try json.readString(key)
                default: try json.skipValue()
                }
            }
            return request
        }
    }

    /// `input` is a string, an array of strings, or token ids (an array, or an array of arrays).
    enum EmbeddingInput: Sendable {
        case texts([String])
        case tokens([[Int]])

        static func read(_ json: inout JSONReader) throws(JSONReader.Failure) -> EmbeddingInput? {
            switch try json.peek() {
            case .null:
                _ = try json.readNull()
                return nil
            case .string:
                return try json.readString("input").map { .texts([$0]) }
            case .array:
                var texts: [String] = []
                var tokens: [Int] = []
                var lists: [[Int]] = []
                try json.readArray("input") { json, index throws(JSONReader.Failure) in
                    switch try json.peek() {
                    case .string: texts.append(try json.readString("input[\(index)]") ?? "")
                    case .number: tokens.append(try json.readInt("input[\(index)]") ?? 0)
                    case .array:
                        var list: [Int] = []
                        try json.readArray("input[\(index)]") { json, inner throws(JSONReader.Failure) in
                            guard let token = try json.readInt("input[\(index)][\(inner)]") else {
                                throw .wrongType(field: "input[\(index)][\(inner)]", expected: "an integer")
                            }
                            list.append(token)
                        }
                        lists.append(list)
                    default:
                        throw .wrongType(field: "input[\(index)]", expected: "a string or token ids")
                    }
                }
                let kinds = (texts.isEmpty ? 0 : 1) + (tokens.isEmpty ? 0 : 1) + (lists.isEmpty ? 0 : 1)
                guard kinds <= 1 else {
                    throw .wrongType(field: "input", expected: "strings, token ids, or arrays of token ids, unmixed")
                }
                if !tokens.isEmpty { return .tokens([tokens]) }
                if !lists.isEmpty { return .tokens(lists) }
                return .texts(texts)
            default:
                throw .wrongType(field: "input", expected: "a string or an array")
            }
        }
    }

    static func embeddings(_ request: EmbeddingsRequest) throws(MockError) -> Reply {
        guard let model = request.model, !model.isEmpty else {
            throw MockError(status: 400, message: "you must provide a model parameter", param: "model")
        }
        guard let input = request.input else { throw .missing("input", .openAI) }
        let dimensions = request.dimensions ?? embeddingDimensionsDefault
        guard (1...embeddingDimensionsMax).contains(dimensions) else {
            throw .invalid(
                "dimensions", "expected a value in 1...\(embeddingDimensionsMax), got \(dimensions).", .openAI)
        }
        let base64: Bool
        switch request.encodingFormat {
        case nil, "float": base64 = false
        case "base64": base64 = true
        case let other?:
            throw .invalid("encoding_format", "'\(other)' is not one of ['float', 'base64'].", .openAI)
        }
        // One (seed, token count) per input: the seed is a hash of the text, so vectors are stable.
        let items: [(seed: UInt64, tokens: Int)]
        switch input {
        case .texts(let texts):
            items = texts.map { (fnv1a(Array($0.utf8)), MockReply.tokens(bytes: $0.utf8.count)) }
        case .tokens(let lists):
            items = lists.map { list in
                (fnv1a(list.flatMap { withUnsafeBytes(of: Int64($0).littleEndian, Array.init) }), max(1, list.count))
            }
        }
        guard !items.isEmpty else {
            throw .invalid("input", "empty array. Expected an array with minimum length 1.", .openAI)
        }

        let floatsBytes = base64 ? dimensions * 6 : dimensions * 12
        var out = ByteBufferAllocator().buffer(capacity: 160 + model.utf8.count + items.count * (60 + floatsBytes))
        out.writeStaticString(#"{"object":"list","data":["#)
        var promptTokens = 0
        for (index, item) in items.enumerated() {
            promptTokens += item.tokens
            let vector = embedding(seed: item.seed, dimensions: dimensions)
            if index > 0 { out.writeStaticString(",") }
            out.writeStaticString(#"{"object":"embedding","index":"#)
            out.writeJSONInt(index)
            out.writeStaticString(#","embedding":"#)
            if base64 {
                out.writeStaticString("\"")
                out.writeString(base64LittleEndian(vector))
                out.writeStaticString("\"")
            } else {
                out.writeStaticString("[")
                for (i, value) in vector.enumerated() {
                    if i > 0 { out.writeStaticString(",") }
                    out.writeString(value.description)
                }
                out.writeStaticString("]")
            }
            out.writeStaticString("}")
        }
        out.writeStaticString(#"],"model":"#)
        out.writeJSONString(model)
        out.writeStaticString(#","usage":{"prompt_tokens":"#)
        out.writeJSONInt(promptTokens)
        out.writeStaticString(#","total_tokens":"#)
        out.writeJSONInt(promptTokens)
        out.writeStaticString("}}")
        return Reply(body: .json(out), model: model)
    }

    /// A unit vector drawn from SplitMix64 seeded with `seed`, like real embeddings normalised to length 1.
    static func embedding(seed: UInt64, dimensions: Int) -> [Float] {
        var rng = SplitMix64(seed: seed)
        var vector = (0..<dimensions).map { _ in Float(rng.nextUnitInterval() * 2 - 1) }
        let norm = vector.reduce(0) { $0 + $1 * $1 }.squareRoot()
        if norm > 0 {
            for i in vector.indices { vector[i] /= norm }
        }
        return vector
    }

    /// `encoding_format: "base64"`: the float32 values, little-endian, base64 (what the SDK decodes
    /// with `np.frombuffer(base64.b64decode(s), dtype="float32")`).
    static func base64LittleEndian(_ vector: [Float]) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(vector.count * 4)
        for value in vector {
            withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
        }
        return Data(bytes).base64EncodedString()
    }

    /// FNV-1a, 64-bit (Fowler, Noll, Vo; draft-eastlake-fnv).
    static func fnv1a(_ bytes: [UInt8]) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01B3
        }
        return hash
    }

    // MARK: Models

    /// `GET /v1/models`, rendered once.
    static let modelList: ByteBuffer = {
        var out = ByteBufferAllocator().buffer(capacity: 512)
        out.writeStaticString(#"{"object":"list","data":["#)
        for (i, model) in models.enumerated() {
            if i > 0 { out.writeStaticString(",") }
            writeModel(model, into: &out)
        }
        out.writeStaticString("]}")
        return out
    }()

    /// `GET /v1/models/{model}`.
    static func model(_ id: String) throws(MockError) -> Reply {
        guard models.contains(id) else {
            throw MockError(
                status: 404, message: "The model '\(id)' does not exist or you do not have access to it.",
                param: "model", code: "model_not_found")
        }
        var out = ByteBufferAllocator().buffer(capacity: 128)
        writeModel(id, into: &out)
        return Reply(body: .json(out), model: id)
    }

    private static func writeModel(_ id: String, into out: inout ByteBuffer) {
        out.writeStaticString(#"{"id":"#)
        out.writeJSONString(id)
        out.writeStaticString(#","object":"model","created":"#)
        out.writeJSONInt(modelsCreated)
        out.writeStaticString(#","owned_by":"mock"}"#)
    }
}
