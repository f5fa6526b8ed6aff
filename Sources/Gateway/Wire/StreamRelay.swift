import EventLog

/// Relays an upstream event stream to the client, translating between the two APIs when they
/// differ, and reads the usage on the way (what token limits are charged with).
public struct StreamRelay: Sendable {
    public enum Mode: Sendable, Equatable {
        /// OpenAI to OpenAI; the usage chunk the gateway asked for is dropped when the client
        /// did not ask for it.
        case openAI(clientWantsUsage: Bool)
        case anthropic
        case anthropicToOpenAI(includeUsage: Bool)
        case openAIToAnthropic
    }

    public let mode: Mode
    public private(set) var usage = Usage()
    /// Whether content has been relayed yet (time to first token).
    public private(set) var sawContent = false
    private var started = false
    private var finished = false
    private var id = ""
    private var model: String
    private let created: UInt64
    private var finishReason: String?

    public init(mode: Mode, model: String, createdSeconds: UInt64) {
        self.mode = mode
        self.model = model
        self.created = createdSeconds
    }

    /// Bytes for the client for one upstream event.
    public mutating func relay(_ event: SSEEvent) -> [UInt8] {
        switch mode {
        case .openAI(let wantsUsage): return openAIPassthrough(event, wantsUsage: wantsUsage)
        case .anthropic: return anthropicPassthrough(event)
        case .anthropicToOpenAI(let includeUsage): return anthropicToOpenAI(event, includeUsage: includeUsage)
        case .openAIToAnthropic: return openAIToAnthropic(event)
        }
    }

    /// Closing bytes when the upstream stream ended without its own end marker.
    public mutating func finish() -> [UInt8] {
        guard !finished else { return [] }
        finished = true
        switch mode {
        case .openAI, .anthropic: return []
        case .anthropicToOpenAI(let includeUsage):
            // An upstream that closed without its end marker: say so rather than end cleanly.
            guard finishReason != nil else {
                let error = GatewayError(
                    status: 502, type: "upstream_error", message: "the provider ended the stream early")
                return SSEEvent(data: error.openAIJSON.rendered()).bytes
            }
            return openAIEnd(includeUsage: includeUsage)
        case .openAIToAnthropic:
            guard finishReason != nil else {
                let error = GatewayError(status: 502, type: "api_error", message: "the provider ended the stream early")
                return anthropicStart() + SSEEvent(event: "error", data: error.anthropicJSON.rendered()).bytes
            }
            return anthropicStart() + anthropicEnd()
        }
    }

    // MARK: Pass-through

    private mutating func openAIPassthrough(_ event: SSEEvent, wantsUsage: Bool) -> [UInt8] {
        if event.data == "[DONE]" {
            finished = true
            return event.bytes
        }
        if !sawContent, Self.hasText(event.data) { sawContent = true }
        guard event.data.contains("\"usage\""), var chunk = try? JSONValue(parsing: Array(event.data.utf8)),
            let u = chunk["usage"], !u.isNull
        else { return event.bytes }
        usage = Usage(openAI: u)
        if wantsUsage { return event.bytes }
        if chunk["choices"]?.arrayValue?.isEmpty ?? true { return [] }
        chunk.set("usage", nil)
        return SSEEvent(event: event.event, data: chunk.rendered()).bytes
    }

    private mutating func anthropicPassthrough(_ event: SSEEvent) -> [UInt8] {
        switch event.event {
        case "message_start":
            if let json = try? JSONValue(parsing: Array(event.data.utf8)) {
                let output = usage.output
                usage = Usage(anthropic: json["message"]?["usage"])
                usage.output = max(usage.output, output)
            }
        case "message_delta":
            if let json = try? JSONValue(parsing: Array(event.data.utf8)) {
                usage.absorb(anthropicDelta: json["usage"])
            }
        case "content_block_delta": sawContent = true
        case "message_stop": finished = true
        default: break
        }
        return event.bytes
    }

    /// Whether an OpenAI chunk carries non-empty `content` (with or without a space after the colon).
    static func hasText(_ data: String) -> Bool {
        guard let range = data.range(of: "\"content\":") else { return false }
        let rest = data[range.upperBound...].drop { $0 == " " }
        return rest.hasPrefix("\"") && !rest.hasPrefix("\"\"")
    }

    // MARK: Anthropic → OpenAI

    private func chunk(delta: JSONValue, finishReason: String?) -> [UInt8] {
        let value: JSONValue = .object([
            "id": .string("chatcmpl-" + id), "object": .string("chat.completion.chunk"), "created": .uint(created),
            "model": .string(model),
            "choices": .array([
                .object([
                    "index": .int(0), "delta": delta, "finish_reason": finishReason.map(JSONValue.string) ?? .null,
                    "logprobs": .null,
                ])
            ]),
        ])
        return SSEEvent(data: value.rendered()).bytes
    }

    private mutating func anthropicToOpenAI(_ event: SSEEvent, includeUsage: Bool) -> [UInt8] {
        guard let json = try? JSONValue(parsing: Array(event.data.utf8)) else { return [] }
        switch event.event ?? json["type"]?.stringValue {
        case "message_start":
            let message = json["message"]
            id = message?["id"]?.stringValue ?? "bifrost"
            if let m = message?["model"]?.stringValue { model = m }
            usage = Usage(anthropic: message?["usage"])
            started = true
            return chunk(delta: .object(["role": .string("assistant"), "content": .string("")]), finishReason: nil)
        case "content_block_delta":
            guard let text = json["delta"]?["text"]?.stringValue else { return [] }
            sawContent = true
            return chunk(delta: .object(["content": .string(text)]), finishReason: nil)
        case "message_delta":
            usage.absorb(anthropicDelta: json["usage"])
            finishReason = Translate.openAIFinishReason(json["delta"]?["stop_reason"]?.stringValue)
            return chunk(delta: .object([:]), finishReason: finishReason)
        case "message_stop":
            finished = true
            return openAIEnd(includeUsage: includeUsage)
        case "error":
            finished = true
            let message = json["error"]?["message"]?.stringValue ?? "the provider stream failed"
            let error = GatewayError(status: 502, type: "upstream_error", message: message)
            return SSEEvent(data: error.openAIJSON.rendered()).bytes
        default:
            return []
        }
    }

    private func openAIEnd(includeUsage: Bool) -> [UInt8] {
        var out: [UInt8] = []
        if includeUsage {
            let value: JSONValue = .object([
                "id": .string("chatcmpl-" + id), "object": .string("chat.completion.chunk"),
                "created": .uint(created), "model": .string(model), "choices": .array([]),
                "usage": usage.openAIJSON,
            ])
            out += SSEEvent(data: value.rendered()).bytes
        }
        out += SSEEvent(data: "[DONE]").bytes
        return out
    }

    // MARK: OpenAI → Anthropic

    private mutating func anthropicStart() -> [UInt8] {
        guard !started else { return [] }
        started = true
        let message: JSONValue = .object([
            "id": .string("msg_" + (id.isEmpty ? "bifrost" : id)), "type": .string("message"),
            "role": .string("assistant"), "model": .string(model), "content": .array([]),
            "stop_reason": .null, "stop_sequence": .null,
            "usage": .object(["input_tokens": .int(0), "output_tokens": .int(0)]),
        ])
        return SSEEvent(
            event: "message_start",
            data: JSONValue.object(["type": .string("message_start"), "message": message]).rendered()
        ).bytes
            + SSEEvent(
                event: "content_block_start",
                data: JSONValue.object([
                    "type": .string("content_block_start"), "index": .int(0),
                    "content_block": .object(["type": .string("text"), "text": .string("")]),
                ]).rendered()
            ).bytes
    }

    private func anthropicEnd() -> [UInt8] {
        SSEEvent(
            event: "content_block_stop",
            data: JSONValue.object(["type": .string("content_block_stop"), "index": .int(0)]).rendered()
        ).bytes
            + SSEEvent(
                event: "message_delta",
                data: JSONValue.object([
                    "type": .string("message_delta"),
                    "delta": .object([
                        "stop_reason": .string(Translate.anthropicStopReason(finishReason)), "stop_sequence": .null,
                    ]),
                    "usage": usage.anthropicJSON,
                ]).rendered()
            ).bytes
            + SSEEvent(event: "message_stop", data: #"{"type":"message_stop"}"#).bytes
    }

    private mutating func openAIToAnthropic(_ event: SSEEvent) -> [UInt8] {
        if event.data == "[DONE]" {
            guard !finished else { return [] }
            finished = true
            return anthropicStart() + anthropicEnd()
        }
        guard let json = try? JSONValue(parsing: Array(event.data.utf8)) else { return [] }
        if let error = json["error"], !error.isNull {
            finished = true
            let message = error["message"]?.stringValue ?? "the provider stream failed"
            return SSEEvent(
                event: "error",
                data: GatewayError(status: 502, type: "api_error", message: message)
                    .anthropicJSON.rendered()
            ).bytes
        }
        if id.isEmpty, var chunkID = json["id"]?.stringValue {
            if chunkID.hasPrefix("chatcmpl-") { chunkID.removeFirst(9) }
            id = chunkID
        }
        if let m = json["model"]?.stringValue, !started { model = m }
        if let u = json["usage"], !u.isNull { usage = Usage(openAI: u) }
        var out = anthropicStart()
        if let choice = json["choices"]?.arrayValue?.first {
            if let text = choice["delta"]?["content"]?.stringValue, !text.isEmpty {
                sawContent = true
                out +=
                    SSEEvent(
                        event: "content_block_delta",
                        data: JSONValue.object([
                            "type": .string("content_block_delta"), "index": .int(0),
                            "delta": .object(["type": .string("text_delta"), "text": .string(text)]),
                        ]).rendered()
                    ).bytes
            }
            if let reason = choice["finish_reason"]?.stringValue { finishReason = reason }
        }
        return out
    }
}
