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

/// A validated client request. Unknown fields stay in `original` and reach providers of the
/// same API byte for byte.
public struct ClientRequest: Sendable {
    public var endpoint: ClientEndpoint
    /// The body as sent, forwarded untouched when nothing needs to change.
    public var original: [UInt8]
    /// The members the gateway reads (`projection`); the rest of the body was checked and
    /// skipped, and is only in `original`.
    public var fields: JSONValue
    /// Where each top-level member sits in `original`, for same-API edits.
    let layout: JSONObjectLayout
    public var model: String
    public var stream: Bool
    /// `stream_options.include_usage` (OpenAI streams).
    public var includeUsage: Bool
    /// Models to try after `model`, from the body's `fallbacks` (removed before forwarding).
    public var fallbacks: [String]
    /// The node this request was migrated from (at most one hop), nil for a client's request.
    public var migratedFrom: String?

    /// What `parse` builds: the routing fields whole, each message's `role`, and nothing of the
    /// messages' content or the embedding input.
    static let projection = JSONProjection.members([
        "model": .whole, "stream": .whole, "stream_options": .whole, "fallbacks": .whole, "max_tokens": .whole,
        "input": .items(.skipped), "messages": .items(.members(["role": .whole])),
    ])

    public static func parse(_ endpoint: ClientEndpoint, _ bytes: [UInt8]) throws(GatewayError) -> ClientRequest {
        let layout: JSONObjectLayout
        do {
            layout = try JSONObjectLayout(parsing: bytes, projection: projection)
        } catch JSONObjectLayout.Failure.malformed(let error) {
            throw .malformedJSON(error.description)
        } catch {
            throw GatewayError(
                status: 400, type: "invalid_request_error", message: "the request body must be a JSON object")
        }
        let body = layout.value
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
            endpoint: endpoint, original: bytes, fields: body, layout: layout, model: model, stream: stream,
            includeUsage: includeUsage, fallbacks: fallbacks)
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

    /// The body for a provider speaking `api`, asking for `model`: for the same API, `original`
    /// with `model` replaced, `fallbacks` dropped and stream usage asked for, every other member
    /// byte for byte; for the other API, a translation of the whole body.
    public func upstreamBody(api: WireAPI, model upstreamModel: String) throws(GatewayError) -> [UInt8] {
        switch (endpoint.api, api) {
        case (.openAI, .openAI):
            var setting: [(key: String, value: JSONValue)] = [("model", .string(upstreamModel))]
            if stream && !includeUsage {
                // Usage is what the gateway charges token limits with; it is removed again
                // before the client sees it when the client did not ask for it.
                var options = fields["stream_options"] ?? .object([:])
                if options.objectValue == nil { options = .object([:]) }
                options.set("include_usage", .bool(true))
                setting.append(("stream_options", options))
            }
            return layout.edited(original, setting: setting, removing: ["fallbacks"])
        case (.anthropic, .anthropic):
            return layout.edited(original, setting: [("model", .string(upstreamModel))], removing: ["fallbacks"])
        case (.openAI, .anthropic):
            guard endpoint == .chatCompletions else {
                throw .unsupported("\(upstreamModel) is served by an Anthropic provider, which has no embeddings API")
            }
            return try Translate.chatToMessages(JSONValue.parseBody(original), model: upstreamModel).bytes
        case (.anthropic, .openAI):
            return try Translate.messagesToChat(JSONValue.parseBody(original), model: upstreamModel, stream: stream)
                .bytes
        }
    }
}
