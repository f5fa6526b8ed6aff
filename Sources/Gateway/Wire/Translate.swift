import EventLog
import Foundation

/// OpenAI Chat Completions ⇄ Anthropic Messages, for requests and whole responses.
/// Text content translates; images, tools and audio do not, and are refused with a 400 that
/// says so rather than silently dropped.
public enum Translate {
    // MARK: Requests

    /// An OpenAI chat request as an Anthropic Messages request.
    public static func chatToMessages(_ chat: JSONValue, model: String) throws(GatewayError) -> JSONValue {
        var system: [String] = []
        var messages: [JSONValue] = []
        for (i, message) in (chat["messages"]?.arrayValue ?? []).enumerated() {
            let role = message["role"]?.stringValue ?? ""
            let text = try textContent(message["content"], path: "messages[\(i)].content")
            switch role {
            case "system", "developer": system.append(text)
            case "user", "assistant":
                messages.append(.object(["role": .string(role), "content": .string(text)]))
            default:
                throw .unsupported(
                    "messages[\(i)]: role \"\(role)\" cannot be translated for an Anthropic model",
                    param: "messages[\(i)].role")
            }
        }
        if chat["tools"] != nil || chat["functions"] != nil {
            throw .unsupported("tools cannot be translated for an Anthropic model", param: "tools")
        }
        var out: [String: JSONValue] = [
            "model": .string(model), "messages": .array(messages),
            "max_tokens": .int(Int64(chat["max_completion_tokens"]?.intValue ?? chat["max_tokens"]?.intValue ?? 4096)),
        ]
        if !system.isEmpty { out["system"] = .string(system.joined(separator: "\n\n")) }
        for key in ["temperature", "top_p"] { if let v = chat[key], !v.isNull { out[key] = v } }
        switch chat["stop"] {
        case .string(let s)?: out["stop_sequences"] = .array([.string(s)])
        case .array(let a)?: out["stop_sequences"] = .array(a)
        default: break
        }
        if chat["stream"]?.boolValue == true { out["stream"] = .bool(true) }
        return .object(out)
    }

    /// An Anthropic Messages request as an OpenAI chat request.
    public static func messagesToChat(
        _ request: JSONValue, model: String, stream: Bool
    ) throws(GatewayError)
        -> JSONValue
    {
        var messages: [JSONValue] = []
        if let system = request["system"], !system.isNull {
            messages.append(
                .object(["role": .string("system"), "content": .string(try textContent(system, path: "system"))]))
        }
        for (i, message) in (request["messages"]?.arrayValue ?? []).enumerated() {
            let role = message["role"]?.stringValue ?? ""
            guard role == "user" || role == "assistant" else {
                throw .invalidField("messages[\(i)].role", "expected \"user\" or \"assistant\"")
            }
            let text = try textContent(message["content"], path: "messages[\(i)].content")
            messages.append(.object(["role": .string(role), "content": .string(text)]))
        }
        if request["tools"] != nil {
            throw .unsupported("tools cannot be translated for an OpenAI model", param: "tools")
        }
        var out: [String: JSONValue] = ["model": .string(model), "messages": .array(messages)]
        if let n = request["max_tokens"]?.intValue { out["max_tokens"] = .int(Int64(n)) }
        for key in ["temperature", "top_p"] { if let v = request[key], !v.isNull { out[key] = v } }
        if let stops = request["stop_sequences"]?.arrayValue { out["stop"] = .array(stops) }
        if stream {
            out["stream"] = .bool(true)
            out["stream_options"] = .object(["include_usage": .bool(true)])
        }
        return .object(out)
    }

    /// The text of a message content: a string, or an array of text parts/blocks.
    static func textContent(_ content: JSONValue?, path: String) throws(GatewayError) -> String {
        switch content {
        case nil, .null?: return ""
        case .string(let s)?: return s
        case .array(let parts)?:
            var text = ""
            for (i, part) in parts.enumerated() {
                guard part["type"]?.stringValue == "text", let t = part["text"]?.stringValue else {
                    throw .unsupported(
                        "\(path)[\(i)]: only text content can be translated between OpenAI and Anthropic models",
                        param: "\(path)[\(i)]")
                }
                text += t
            }
            return text
        default:
            throw .invalidField(path, "expected a string or an array of content parts")
        }
    }

    // MARK: Responses

    static func anthropicStopReason(_ finish: String?) -> String {
        switch finish {
        case "length": "max_tokens"
        case "tool_calls", "function_call": "tool_use"
        default: "end_turn"
        }
    }

    static func openAIFinishReason(_ stop: String?) -> String {
        switch stop {
        case "max_tokens": "length"
        case "tool_use": "tool_calls"
        default: "stop"
        }
    }

    /// An Anthropic message as an OpenAI `chat.completion`.
    public static func messageToChatCompletion(_ message: JSONValue, nowSeconds: UInt64) -> JSONValue {
        let text = (message["content"]?.arrayValue ?? []).compactMap { block in
            block["type"]?.stringValue == "text" ? block["text"]?.stringValue : nil
        }.joined()
        let usage = Usage(anthropic: message["usage"])
        return .object([
            "id": .string("chatcmpl-" + (message["id"]?.stringValue ?? "bifrost")),
            "object": .string("chat.completion"), "created": .uint(nowSeconds),
            "model": message["model"] ?? .null,
            "choices": .array([
                .object([
                    "index": .int(0),
                    "message": .object(["role": .string("assistant"), "content": .string(text)]),
                    "finish_reason": .string(openAIFinishReason(message["stop_reason"]?.stringValue)),
                    "logprobs": .null,
                ])
            ]),
            "usage": usage.openAIJSON,
        ])
    }

    /// An OpenAI `chat.completion` as an Anthropic message.
    public static func chatCompletionToMessage(_ completion: JSONValue) -> JSONValue {
        let choice = completion["choices"]?.arrayValue?.first
        let text = choice?["message"]?["content"]?.stringValue ?? ""
        let usage = Usage(openAI: completion["usage"])
        var id = completion["id"]?.stringValue ?? "bifrost"
        if id.hasPrefix("chatcmpl-") { id.removeFirst(9) }
        return .object([
            "id": .string(id.hasPrefix("msg_") ? id : "msg_" + id), "type": .string("message"),
            "role": .string("assistant"),
            "model": completion["model"] ?? .null,
            "content": .array([.object(["type": .string("text"), "text": .string(text)])]),
            "stop_reason": .string(anthropicStopReason(choice?["finish_reason"]?.stringValue)),
            "stop_sequence": .null,
            "usage": usage.anthropicJSON,
        ])
    }
}

/// Tokens a request used, as either API reports them, by the classes providers bill apart.
///
/// `input` and `output` are totals (what token limits are charged with): `input` includes the
/// prompt-cache reads and writes, `output` the reasoning tokens. OpenAI reports totals with the
/// cached and reasoning parts as details; Anthropic reports `input_tokens` without the cache
/// classes, which are added here once each.
public struct Usage: Sendable, Equatable {
    public var input: Int = 0
    public var output: Int = 0
    /// Input read from the provider's prompt cache.
    public var cacheRead: Int = 0
    /// Input written to the provider's prompt cache (Anthropic's cache creation).
    public var cacheWrite: Int = 0
    /// Output spent on reasoning.
    public var reasoning: Int = 0

    public init(input: Int = 0, output: Int = 0, cacheRead: Int = 0, cacheWrite: Int = 0, reasoning: Int = 0) {
        self.input = input
        self.output = output
        self.cacheRead = cacheRead
        self.cacheWrite = cacheWrite
        self.reasoning = reasoning
    }

    public init(openAI usage: JSONValue?) {
        input = max(0, usage?["prompt_tokens"]?.intValue ?? 0)
        output = max(0, usage?["completion_tokens"]?.intValue ?? 0)
        cacheRead = min(input, max(0, usage?["prompt_tokens_details"]?["cached_tokens"]?.intValue ?? 0))
        reasoning = min(output, max(0, usage?["completion_tokens_details"]?["reasoning_tokens"]?.intValue ?? 0))
    }

    public init(anthropic usage: JSONValue?) {
        cacheWrite = max(0, usage?["cache_creation_input_tokens"]?.intValue ?? 0)
        cacheRead = max(0, usage?["cache_read_input_tokens"]?.intValue ?? 0)
        input = max(0, usage?["input_tokens"]?.intValue ?? 0) + cacheWrite + cacheRead
        output = max(0, usage?["output_tokens"]?.intValue ?? 0)
    }

    /// A `message_delta` event's usage: the output so far, and the input classes when it
    /// restates them.
    public mutating func absorb(anthropicDelta usage: JSONValue?) {
        if let out = usage?["output_tokens"]?.intValue { output = max(0, out) }
        guard let inputTokens = usage?["input_tokens"]?.intValue, inputTokens > 0 else { return }
        cacheWrite = max(0, usage?["cache_creation_input_tokens"]?.intValue ?? cacheWrite)
        cacheRead = max(0, usage?["cache_read_input_tokens"]?.intValue ?? cacheRead)
        input = inputTokens + cacheWrite + cacheRead
    }

    /// From a whole response body of either API.
    public init(response: JSONValue, api: WireAPI) {
        self = api == .openAI ? Usage(openAI: response["usage"]) : Usage(anthropic: response["usage"])
    }

    /// Input neither read from nor written to a prompt cache.
    public var uncachedInput: Int { max(0, input - cacheRead - cacheWrite) }
    /// Output other than reasoning.
    public var visibleOutput: Int { max(0, output - reasoning) }

    var openAIJSON: JSONValue {
        var fields: [String: JSONValue] = [
            "prompt_tokens": .int(Int64(input)), "completion_tokens": .int(Int64(output)),
            "total_tokens": .int(Int64(input + output)),
        ]
        if cacheRead > 0 { fields["prompt_tokens_details"] = .object(["cached_tokens": .int(Int64(cacheRead))]) }
        if reasoning > 0 {
            fields["completion_tokens_details"] = .object(["reasoning_tokens": .int(Int64(reasoning))])
        }
        return .object(fields)
    }

    var anthropicJSON: JSONValue {
        var fields: [String: JSONValue] = [
            "input_tokens": .int(Int64(uncachedInput)), "output_tokens": .int(Int64(output)),
        ]
        if cacheRead > 0 { fields["cache_read_input_tokens"] = .int(Int64(cacheRead)) }
        if cacheWrite > 0 { fields["cache_creation_input_tokens"] = .int(Int64(cacheWrite)) }
        return .object(fields)
    }
}
