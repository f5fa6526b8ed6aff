import EventLog
import Foundation
import Testing

@testable import Gateway

/// Request validation, same-API forwarding and OpenAI ⇄ Anthropic translation of whole
/// requests and responses.
@Suite struct WireTests {
    func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    func json(_ text: String) throws -> JSONValue { try JSONParser.parse(Array(text.utf8)) }

    func parse(_ endpoint: ClientEndpoint, _ text: String) throws(GatewayError) -> ClientRequest {
        try ClientRequest.parse(endpoint, Array(text.utf8))
    }

    func rejection(_ endpoint: ClientEndpoint, _ text: String) -> GatewayError? {
        do {
            _ = try parse(endpoint, text)
            return nil
        } catch {
            return error
        }
    }

    static let userHi = #"[{"role":"user","content":"hi"}]"#

    // MARK: Validation

    @Test func chat_missingModel_namesTheField() {
        let error = rejection(.chatCompletions, #"{"messages":\#(Self.userHi)}"#)
        #expect(error == .missingField("model"))
        #expect(error?.status == 400 && error?.param == "model")
    }

    @Test func chat_emptyOrNonStringModel_isInvalid() {
        #expect(rejection(.chatCompletions, #"{"model":"","messages":\#(Self.userHi)}"#)?.param == "model")
        #expect(rejection(.chatCompletions, #"{"model":4,"messages":\#(Self.userHi)}"#)?.param == "model")
        #expect(rejection(.chatCompletions, #"{"model":null,"messages":\#(Self.userHi)}"#) == .missingField("model"))
    }

    @Test func chat_messages_missingEmptyOrMalformed_namesTheField() {
        #expect(rejection(.chatCompletions, #"{"model":"m"}"#) == .missingField("messages"))
        let empty = rejection(.chatCompletions, #"{"model":"m","messages":[]}"#)
        #expect(empty?.param == "messages" && empty?.status == 400)
        #expect(empty?.message.contains("messages") == true)
        #expect(rejection(.chatCompletions, #"{"model":"m","messages":"hi"}"#)?.param == "messages")
        #expect(rejection(.chatCompletions, #"{"model":"m","messages":[{"role":"user"},3]}"#)?.param == "messages[1]")
        #expect(
            rejection(.chatCompletions, #"{"model":"m","messages":[{"role":"user"},{"content":"x"}]}"#)
                == .missingField("messages[1].role"))
    }

    @Test func chat_malformedJSON_is400WithWhereItBroke() {
        let error = rejection(.chatCompletions, "{not json")
        #expect(error?.status == 400)
        #expect(error?.type == "invalid_request_error")
        #expect(error?.message.contains("at byte 1") == true)
        #expect(rejection(.chatCompletions, "[1,2]")?.status == 400)
    }

    @Test func chat_streamAndFallbacks_mustHaveTheirTypes() {
        #expect(
            rejection(.chatCompletions, #"{"model":"m","messages":\#(Self.userHi),"stream":"yes"}"#)?.param == "stream")
        #expect(
            rejection(.chatCompletions, #"{"model":"m","messages":\#(Self.userHi),"fallbacks":["a",1]}"#)?.param
                == "fallbacks")
        #expect(
            rejection(.chatCompletions, #"{"model":"m","messages":\#(Self.userHi),"fallbacks":"a"}"#)?.param
                == "fallbacks")
    }

    @Test func chat_parsesStreamUsageAndFallbacks() throws {
        let request = try parse(
            .chatCompletions,
            #"{"model":"gpt-4o","messages":\#(Self.userHi),"stream":true,"stream_options":{"include_usage":true},"fallbacks":["claude-3-5-haiku-latest"]}"#
        )
        #expect(request.model == "gpt-4o")
        #expect(request.stream && request.includeUsage)
        #expect(request.fallbacks == ["claude-3-5-haiku-latest"])
        let plain = try parse(.chatCompletions, #"{"model":"gpt-4o","messages":\#(Self.userHi),"stream":null}"#)
        #expect(!plain.stream && !plain.includeUsage && plain.fallbacks.isEmpty)
    }

    @Test func messages_maxTokens_isRequiredAndPositive() {
        #expect(rejection(.messages, #"{"model":"c","messages":\#(Self.userHi)}"#) == .missingField("max_tokens"))
        #expect(
            rejection(.messages, #"{"model":"c","max_tokens":0,"messages":\#(Self.userHi)}"#)?.param == "max_tokens")
        #expect(
            rejection(.messages, #"{"model":"c","max_tokens":"9","messages":\#(Self.userHi)}"#)?.param == "max_tokens")
        #expect(rejection(.messages, #"{"model":"c","max_tokens":9}"#) == .missingField("messages"))
        #expect(rejection(.messages, #"{"model":"c","max_tokens":9,"messages":\#(Self.userHi)}"#) == nil)
    }

    @Test func embeddings_input_acceptsEveryDocumentedForm() {
        for input in [#""one""#, #"["one","two"]"#, "[1,2,3]", "[[1,2],[3]]"] {
            #expect(rejection(.embeddings, #"{"model":"e","input":\#(input)}"#) == nil, "\(input)")
        }
        #expect(rejection(.embeddings, #"{"model":"e"}"#) == .missingField("input"))
        #expect(rejection(.embeddings, #"{"model":"e","input":[]}"#)?.param == "input")
        #expect(rejection(.embeddings, #"{"model":"e","input":5}"#)?.param == "input")
    }

    // MARK: Same-API forwarding

    @Test func passThrough_sameModel_forwardsTheOriginalBytes() throws {
        let texts: [(ClientEndpoint, WireAPI, String)] = [
            (
                .chatCompletions, .openAI,
                #"{ "model" : "gpt-4o",  "messages":\#(Self.userHi), "temperature":1.0, "x_vendor":{"k":[1e-7]} }"#
            ),
            (
                .chatCompletions, .openAI,
                #"{"model":"gpt-4o","messages":\#(Self.userHi),"stream":true,"stream_options":{"include_usage":true}}"#
            ),
            (
                .messages, .anthropic,
                #"{"model":"claude","max_tokens":5,"messages":\#(Self.userHi),"metadata":{"user_id":"u"},"top_k":3}"#
            ),
            (.embeddings, .openAI, #"{"model":"e","input":"one","dimensions":256}"#),
        ]
        for (endpoint, api, text) in texts {
            let request = try parse(endpoint, text)
            #expect(try request.upstreamBody(api: api, model: request.model) == bytes(text), "\(text)")
        }
    }

    @Test func passThrough_providerPrefix_rewritesOnlyTheModelAndKeepsUnknownFields() throws {
        let text =
            #"{"model":"openai/gpt-4o-mini","messages":\#(Self.userHi),"some_vendor_field":{"x":1},"temperature":0.2,"logit_bias":{"50256":-100}}"#
        let request = try parse(.chatCompletions, text)
        let forwarded = try json(
            String(decoding: try request.upstreamBody(api: .openAI, model: "gpt-4o-mini"), as: UTF8.self))
        guard case .object(var expected) = try json(text) else { return #expect(Bool(false)) }
        expected["model"] = .string("gpt-4o-mini")
        #expect(forwarded == .object(expected))
    }

    @Test func passThrough_edits_keepEveryOtherMemberByteForByte() throws {
        let text =
            #"{"model":"openai/gpt-4o-mini", "messages":\#(Self.userHi),"temperature":1.0,"fallbacks":["b"],"x":{"k":[1e-7, "\u00e9"]}}"#
        let request = try parse(.chatCompletions, text)
        let forwarded = String(decoding: try request.upstreamBody(api: .openAI, model: "gpt-4o-mini"), as: UTF8.self)
        #expect(
            forwarded
                == #"{"model":"gpt-4o-mini","messages":\#(Self.userHi),"temperature":1.0,"x":{"k":[1e-7, "\u00e9"]}}"#)
    }

    @Test func parse_checksTheMembersItSkips() {
        // The content of a message is never built, but a broken one is still the client's error.
        #expect(throws: GatewayError.self) {
            try parse(.chatCompletions, #"{"model":"m","messages":[{"role":"user","content":"bad \q escape"}]}"#)
        }
        #expect(throws: GatewayError.self) {
            try parse(.chatCompletions, #"{"model":"m","messages":[{"role":"user"}],"temperature":01}"#)
        }
    }

    @Test func passThrough_fallbacks_areRemoved() throws {
        for (endpoint, api) in [(ClientEndpoint.chatCompletions, WireAPI.openAI), (.messages, .anthropic)] {
            let request = try parse(
                endpoint, #"{"model":"a","max_tokens":3,"messages":\#(Self.userHi),"fallbacks":["b"],"keep":true}"#)
            let forwarded = try JSONParser.parse(try request.upstreamBody(api: api, model: "a"))
            #expect(forwarded["fallbacks"] == nil)
            #expect(forwarded["keep"] == .bool(true))
            #expect(forwarded["model"] == .string("a"))
        }
    }

    @Test func passThrough_streamWithoutIncludeUsage_asksTheProviderForUsage() throws {
        let request = try parse(
            .chatCompletions, #"{"model":"gpt-4o","messages":\#(Self.userHi),"stream":true,"stream_options":{"x":1}}"#)
        let forwarded = try JSONParser.parse(try request.upstreamBody(api: .openAI, model: "gpt-4o"))
        #expect(forwarded["stream_options"] == .object(["include_usage": .bool(true), "x": .int(1)]))
        #expect(!request.includeUsage)
    }

    // MARK: Request translation

    @Test func chatToMessages_translatesSystemTextPartsStopAndDefaults() throws {
        let chat = try json(
            #"""
            {"model":"claude-3-5-haiku-latest","messages":[
              {"role":"system","content":"be brief"},
              {"role":"developer","content":[{"type":"text","text":"and kind"}]},
              {"role":"user","content":[{"type":"text","text":"hello "},{"type":"text","text":"there"}]},
              {"role":"assistant","content":"hi!"},
              {"role":"user","content":"again"}],
             "temperature":0.5,"top_p":0.9,"stop":"END","stream":true,"seed":7,"logprobs":false}
            """#)
        let anthropic = try Translate.chatToMessages(chat, model: "claude-3-5-haiku-20241022")
        #expect(
            anthropic
                == (try json(
                    #"""
                    {"model":"claude-3-5-haiku-20241022","max_tokens":4096,"system":"be brief\n\nand kind",
                     "messages":[{"role":"user","content":"hello there"},{"role":"assistant","content":"hi!"},
                                 {"role":"user","content":"again"}],
                     "temperature":0.5,"top_p":0.9,"stop_sequences":["END"],"stream":true}
                    """#)))
    }

    @Test func chatToMessages_maxTokens_prefersMaxCompletionTokens() throws {
        let base = #""model":"c","messages":\#(Self.userHi)"#
        #expect(try Translate.chatToMessages(json("{\(base),\"max_tokens\":9}"), model: "c")["max_tokens"] == .int(9))
        #expect(
            try Translate.chatToMessages(json("{\(base),\"max_tokens\":9,\"max_completion_tokens\":11}"), model: "c")[
                "max_tokens"] == .int(11))
        #expect(
            try Translate.chatToMessages(json("{\(base),\"stop\":[\"a\",\"b\"]}"), model: "c")["stop_sequences"]
                == .array([.string("a"), .string("b")]))
    }

    @Test func chatToMessages_refusesWhatItCannotCarry() throws {
        func refusal(_ text: String) -> GatewayError? {
            do {
                _ = try Translate.chatToMessages(try json(text), model: "c")
                return nil
            } catch let error as GatewayError {
                return error
            } catch {
                return nil
            }
        }
        let image =
            #"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"see"},{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}"#
        #expect(refusal(image)?.status == 400)
        #expect(refusal(image)?.param == "messages[0].content[1]")
        let tools = #"{"model":"m","messages":\#(Self.userHi),"tools":[{"type":"function","function":{"name":"f"}}]}"#
        #expect(refusal(tools)?.param == "tools")
        let toolRole = #"{"model":"m","messages":[{"role":"tool","tool_call_id":"1","content":"42"}]}"#
        #expect(refusal(toolRole)?.status == 400)
    }

    @Test func messagesToChat_translatesSystemBlocksStopAndStream() throws {
        let request = try json(
            #"""
            {"model":"gpt-4o-mini","max_tokens":64,"system":[{"type":"text","text":"be brief","cache_control":{"type":"ephemeral"}}],
             "messages":[{"role":"user","content":[{"type":"text","text":"cross "},{"type":"text","text":"the streams"}]},
                         {"role":"assistant","content":"ok"},{"role":"user","content":"more"}],
             "temperature":0.3,"top_p":0.8,"top_k":5,"stop_sequences":["\n\nHuman:"],"stream":true,"metadata":{"user_id":"u1"}}
            """#)
        let chat = try Translate.messagesToChat(request, model: "gpt-4o-mini-2024-07-18", stream: true)
        #expect(chat["model"] == .string("gpt-4o-mini-2024-07-18"))
        #expect(
            chat["messages"]
                == (try json(
                    #"""
                    [{"role":"system","content":"be brief"},{"role":"user","content":"cross the streams"},
                     {"role":"assistant","content":"ok"},{"role":"user","content":"more"}]
                    """#)))
        #expect(chat["temperature"] == .double(0.3) && chat["top_p"] == .double(0.8))
        #expect(chat["stop"] == .array([.string("\n\nHuman:")]))
        #expect(chat["stream"] == .bool(true))
        #expect(chat["stream_options"] == .object(["include_usage": .bool(true)]))
        #expect(chat["top_k"] == nil)
        #expect(chat["max_tokens"] == .int(64) || chat["max_completion_tokens"] == .int(64))
    }

    @Test func requestRoundTrip_chatToMessagesToChat_keepsTheConversation() throws {
        let original = try json(
            #"""
            {"model":"m","messages":[{"role":"system","content":"sys"},{"role":"user","content":"q1"},
             {"role":"assistant","content":"a1"},{"role":"user","content":"q2"}],
             "max_tokens":100,"temperature":0.25,"top_p":0.5,"stop":["x","y"]}
            """#)
        let there = try Translate.chatToMessages(original, model: "claude")
        let back = try Translate.messagesToChat(there, model: "m", stream: false)
        #expect(back["messages"] == original["messages"])
        for key in ["temperature", "top_p", "stop"] { #expect(back[key] == original[key], "\(key)") }
        #expect(back["max_tokens"] == .int(100) || back["max_completion_tokens"] == .int(100))
        #expect(back["stream"] == nil || back["stream"] == .bool(false))
    }

    @Test func requestRoundTrip_messagesToChatToMessages_keepsTheConversation() throws {
        let original = try json(
            #"""
            {"model":"claude","max_tokens":64,"system":"sys","messages":[{"role":"user","content":"q1"},
             {"role":"assistant","content":"a1"},{"role":"user","content":"q2"}],
             "temperature":0.7,"stop_sequences":["STOP"],"stream":true}
            """#)
        let there = try Translate.messagesToChat(original, model: "gpt", stream: true)
        let back = try Translate.chatToMessages(there, model: "claude")
        #expect(back == original)
    }

    // MARK: Response translation

    static let anthropicMessage = #"""
        {"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-3-5-haiku-20241022",
         "content":[{"type":"text","text":"Hello"},{"type":"text","text":", world"}],
         "stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":6}}
        """#

    static let openAICompletion = #"""
        {"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion","created":1741569952,
         "model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_06737a9306",
         "choices":[{"index":0,"message":{"role":"assistant","content":"Hi there","refusal":null,"annotations":[]},
                     "logprobs":null,"finish_reason":"length"}],
         "usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,
                  "prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},
                  "completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0}}}
        """#

    @Test func anthropicMessage_asChatCompletion_hasTheSDKShape() throws {
        let completion = Translate.messageToChatCompletion(try json(Self.anthropicMessage), nowSeconds: 1_700_000_000)
        #expect(
            String(decoding: completion.renderedBytes(), as: UTF8.self)
                == #"{"choices":[{"finish_reason":"stop","index":0,"logprobs":null,"message":{"content":"Hello, world","role":"assistant"}}],"created":1700000000,"id":"chatcmpl-msg_01XFDUDYJgAACzvnptvVoYEL","model":"claude-3-5-haiku-20241022","object":"chat.completion","usage":{"completion_tokens":6,"prompt_tokens":12,"total_tokens":18}}"#
        )
    }

    @Test func chatCompletion_asAnthropicMessage_hasTheSDKShape() throws {
        let message = Translate.chatCompletionToMessage(try json(Self.openAICompletion))
        #expect(
            String(decoding: message.renderedBytes(), as: UTF8.self)
                == #"{"content":[{"text":"Hi there","type":"text"}],"id":"msg_B9MBs8CjcvOU2jLn4n570S5qMJKcT","model":"gpt-4o-mini-2024-07-18","role":"assistant","stop_reason":"max_tokens","stop_sequence":null,"type":"message","usage":{"input_tokens":19,"output_tokens":10}}"#
        )
    }

    @Test func stopReasons_mapBothWays() throws {
        let pairs: [(anthropic: String, openAI: String)] = [
            ("end_turn", "stop"), ("max_tokens", "length"), ("stop_sequence", "stop"),
        ]
        for (anthropic, openAI) in pairs {
            var message = try json(Self.anthropicMessage)
            message.set("stop_reason", .string(anthropic))
            let completion = Translate.messageToChatCompletion(message, nowSeconds: 0)
            #expect(completion["choices"]?[0]?["finish_reason"] == .string(openAI), "\(anthropic)")
        }
        for (openAI, anthropic) in [("stop", "end_turn"), ("length", "max_tokens")] {
            let completion = try json(
                Self.openAICompletion.replacingOccurrences(of: "\"length\"", with: "\"\(openAI)\""))
            #expect(Translate.chatCompletionToMessage(completion)["stop_reason"] == .string(anthropic), "\(openAI)")
        }
    }

    @Test func responseRoundTrip_keepsTextStopReasonAndUsage() throws {
        let message = try json(Self.anthropicMessage)
        let back = Translate.chatCompletionToMessage(Translate.messageToChatCompletion(message, nowSeconds: 1))
        #expect(back["content"] == .array([.object(["type": .string("text"), "text": .string("Hello, world")])]))
        #expect(back["stop_reason"] == message["stop_reason"])
        #expect(back["usage"] == message["usage"])
        #expect(back["model"] == message["model"])

        let completion = try json(Self.openAICompletion)
        let again = Translate.messageToChatCompletion(Translate.chatCompletionToMessage(completion), nowSeconds: 1)
        #expect(
            again["choices"]?[0]?["message"] == .object(["role": .string("assistant"), "content": .string("Hi there")]))
        #expect(again["choices"]?[0]?["finish_reason"] == .string("length"))
        #expect(
            again["usage"]
                == .object(["prompt_tokens": .int(19), "completion_tokens": .int(10), "total_tokens": .int(29)]))
    }

    // MARK: Usage of whole responses

    @Test func usage_ofWholeResponses() throws {
        #expect(Usage(response: try json(Self.openAICompletion), api: .openAI) == Usage(input: 19, output: 10))
        #expect(Usage(response: try json(Self.anthropicMessage), api: .anthropic) == Usage(input: 12, output: 6))
        let embeddings = try json(
            #"{"object":"list","data":[],"model":"e","usage":{"prompt_tokens":8,"total_tokens":8}}"#)
        #expect(Usage(response: embeddings, api: .openAI) == Usage(input: 8, output: 0))
    }

    /// Anthropic's `input_tokens` excludes prompt-cache reads and writes, which are billed (and
    /// should be charged to token limits) as input too; OpenAI's `prompt_tokens` already
    /// includes cached tokens.
    @Test func usage_anthropicCacheTokens_countAsInput() throws {
        let usage = try json(
            #"{"input_tokens":10,"cache_creation_input_tokens":50,"cache_read_input_tokens":1000,"output_tokens":5}"#)
        #expect(Usage(anthropic: usage) == Usage(input: 1060, output: 5, cacheRead: 1000, cacheWrite: 50))
    }
}
