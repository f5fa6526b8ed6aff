import EventLog

/// The client endpoints of the gateway.
public enum ClientEndpoint: String, Sendable {
    case chatCompletions = "chat_completions"
    case embeddings
    case messages

    /// The request path, for forwarding to a peer.
    public var path: String {
        switch self {
        case .chatCompletions: "/v1/chat/completions"
        case .embeddings: "/v1/embeddings"
        case .messages: "/v1/messages"
        }
    }

    /// The API the client speaks (and errors are rendered in).
    public var api: WireAPI { self == .messages ? .anthropic : .openAI }

    var upstream: UpstreamEndpoint {
        switch self {
        case .chatCompletions: .chatCompletions
        case .embeddings: .embeddings
        case .messages: .messages
        }
    }
}

/// A validated client request. Unknown fields stay in `body` and reach providers of the same API.
public struct ClientRequest: Sendable {
    public var endpoint: ClientEndpoint
    /// The body as sent, forwarded untouched when nothing needs to change.
    public var original: [UInt8]
    public var body: JSONValue
    public var model: String
    public var stream: Bool
    /// `stream_options.include_usage` (OpenAI streams).
    public var includeUsage: Bool
    /// Models to try after `model`, from the body's `fallbacks` (removed before forwarding).
    public var fallbacks: [String]
    /// The node this request was migrated from (at most one hop), nil for a client's request.
    public var migratedFrom: String?

    public static func parse(_ endpoint: ClientEndpoint, _ bytes: [UInt8]) throws(GatewayError) -> ClientRequest {
        let body = try JSONValue.parseBody(bytes)
        guard case .object(let fields) = body else {
            throw GatewayError(
                status: 400, type: "invalid_request_error", message: "the request body must be a JSON object")
        }
        guard let modelValue = fields["model"], !modelValue.isNull else { throw .missingField("model") }
        guard let model = modelValue.stringValue, !model.isEmpty else {
            throw .invalidField("model", "expected a non-empty string")
        }
        var stream = false
        if let s = fields["stream"], !s.isNull {
            guard let b = s.boolValue else { throw .invalidField("stream", "expected true or false") }
            stream = b
        }
        var fallbacks: [String] = []
        if let f = fields["fallbacks"], !f.isNull {
            guard let items = f.arrayValue, let names = Optional(items.compactMap(\.stringValue)),
                names.count == items.count
            else { throw .invalidField("fallbacks", "expected an array of model names") }
            fallbacks = names
        }
        switch endpoint {
        case .chatCompletions:
            if endpoint == .embeddings { stream = false }
            try validateMessages(fields["messages"])
        case .messages:
            try validateMessages(fields["messages"])
            guard let maxTokens = fields["max_tokens"], !maxTokens.isNull else { throw .missingField("max_tokens") }
            guard let n = maxTokens.intValue, n >= 1 else {
                throw .invalidField("max_tokens", "expected a positive integer")
            }
        case .embeddings:
            stream = false
            guard let input = fields["input"], !input.isNull else { throw .missingField("input") }
            switch input {
            case .string: break
            case .array(let items) where !items.isEmpty: break
            default: throw .invalidField("input", "expected a string or a non-empty array")
            }
        }
        let includeUsage = fields["stream_options"]?["include_usage"]?.boolValue ?? false
        return ClientRequest(
            endpoint: endpoint, original: bytes, body: body, model: model, stream: stream, includeUsage: includeUsage,
            fallbacks: fallbacks)
    }

    static func validateMessages(_ value: JSONValue?) throws(GatewayError) {
        guard let value, !value.isNull else { throw .missingField("messages") }
        guard let items = value.arrayValue else { throw .invalidField("messages", "expected an array of messages") }
        guard !items.isEmpty else { throw .invalidField("messages", "must contain at least one message") }
        for (i, item) in items.enumerated() {
            guard item.objectValue != nil else { throw .invalidField("messages[\(i)]", "expected an object") }
            guard item["role"]?.stringValue != nil else { throw .missingField("messages[\(i)].role") }
        }
    }

    /// The body for a provider speaking `api`, asking for `model`.
    public func upstreamBody(api: WireAPI, model upstreamModel: String) throws(GatewayError) -> [UInt8] {
        switch (endpoint.api, api) {
        case (.openAI, .openAI):
            let needsUsage = stream && !includeUsage
            if upstreamModel == model && fallbacks.isEmpty && body["fallbacks"] == nil && !needsUsage {
                return original
            }
            var b = body
            b.set("model", .string(upstreamModel))
            b.set("fallbacks", nil)
            if stream {
                // Usage is what the gateway charges token limits with; it is removed again
                // before the client sees it when the client did not ask for it.
                var options = b["stream_options"] ?? .object([:])
                if options.objectValue == nil { options = .object([:]) }
                options.set("include_usage", .bool(true))
                b.set("stream_options", options)
            }
            return b.bytes
        case (.anthropic, .anthropic):
            if upstreamModel == model && body["fallbacks"] == nil { return original }
            var b = body
            b.set("model", .string(upstreamModel))
            b.set("fallbacks", nil)
            return b.bytes
        case (.openAI, .anthropic):
            guard endpoint == .chatCompletions else {
                throw .unsupported("\(upstreamModel) is served by an Anthropic provider, which has no embeddings API")
            }
            return try Translate.chatToMessages(body, model: upstreamModel).bytes
        case (.anthropic, .openAI):
            return try Translate.messagesToChat(body, model: upstreamModel, stream: stream).bytes
        }
    }
}
