import EventLog
import Foundation
import Testing

@testable import Gateway

/// SSE framing and the stream relay (pass-through and OpenAI ⇄ Anthropic translation) on
/// recorded provider streams.
@Suite struct StreamTests {
    // MARK: Recorded streams

    /// `POST /v1/messages` with `"stream": true`, as Anthropic sends it (note the `ping` and the
    /// spaced JSON in it).
    static let anthropicStream = """
        event: message_start
        data: {"type":"message_start","message":{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","content":[],"model":"claude-3-5-haiku-20241022","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}

        event: content_block_start
        data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

        event: ping
        data: {"type": "ping"}

        event: content_block_delta
        data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}

        event: content_block_delta
        data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":", \\"world\\"!\\n"}}

        event: content_block_stop
        data: {"type":"content_block_stop","index":0}

        event: message_delta
        data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}

        event: message_stop
        data: {"type":"message_stop"}


        """

    static let openAIChunkHead =
        #"{"id":"chatcmpl-AbC123","object":"chat.completion.chunk","created":1731000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","#

    /// `POST /v1/chat/completions` with `stream_options.include_usage`, as OpenAI sends it.
    static let openAIEvents = [
        openAIChunkHead
            + #""choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        openAIChunkHead
            + #""choices":[{"index":0,"delta":{"content":"Hi"},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        openAIChunkHead
            + #""choices":[{"index":0,"delta":{"content":" \"there\"\n"},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        openAIChunkHead
            + #""choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}"#,
        openAIChunkHead
            + #""choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}"#,
        "[DONE]",
    ]

    static var openAIStream: String { openAIEvents.map { "data: \($0)\n\n" }.joined() }

    // MARK: Helpers

    /// Splits `bytes` at random points (seeded, so a failure replays).
    static func randomChunks(_ bytes: [UInt8], seed: UInt64) -> [[UInt8]] {
        var rng = SplitMix64(seed: seed)
        var chunks: [[UInt8]] = []
        var i = 0
        while i < bytes.count {
            let n = Int.random(in: 1...17, using: &rng)
            chunks.append(Array(bytes[i..<min(bytes.count, i + n)]))
            i += n
        }
        return chunks
    }

    static func events(_ chunks: [[UInt8]]) throws -> [SSEEvent] {
        var parser = SSEParser()
        var out: [SSEEvent] = []
        for chunk in chunks { out += try parser.feed(chunk) }
        if let last = parser.finish() { out.append(last) }
        return out
    }

    /// What the gateway does with an upstream body: frame, relay, finish.
    static func relay(
        _ mode: StreamRelay.Mode, _ stream: String, model: String = "client-model", seed: UInt64 = 1
    )
        throws -> (text: String, usage: Usage)
    {
        var relay = StreamRelay(mode: mode, model: model, createdSeconds: 1_700_000_000)
        var parser = SSEParser()
        var out: [UInt8] = []
        for chunk in randomChunks(Array(stream.utf8), seed: seed) {
            for event in try parser.feed(chunk) { out += relay.relay(event) }
        }
        if let last = parser.finish() { out += relay.relay(last) }
        out += relay.finish()
        return (String(decoding: out, as: UTF8.self), relay.usage)
    }

    // MARK: SSE parser

    static let awkwardStream =
        ": keep-alive comment\r\n\r\nevent: message_start\r\ndata: {\"a\":1}\r\n\r\n"
        + "data: line one\ndata: line two\nid: 7\nretry: 1000\n\n" + "data:no-space\r\r" + "data: \n\n"
        + "event: last\ndata: tail"

    static let awkwardEvents = [
        SSEEvent(event: "message_start", data: #"{"a":1}"#), SSEEvent(data: "line one\nline two"),
        SSEEvent(data: "no-space"), SSEEvent(data: ""), SSEEvent(event: "last", data: "tail"),
    ]

    @Test func sseParser_wholeBuffer_handlesCRLFCommentsAndMultiLineData() throws {
        #expect(try Self.events([Array(Self.awkwardStream.utf8)]) == Self.awkwardEvents)
    }

    @Test func sseParser_byteByByte_givesTheSameEvents() throws {
        let bytes = Array(Self.awkwardStream.utf8)
        #expect(try Self.events(bytes.map { [$0] }) == Self.awkwardEvents)
        let recorded = Array(Self.anthropicStream.utf8)
        #expect(try Self.events(recorded.map { [$0] }) == Self.events([recorded]))
    }

    @Test func sseParser_randomSplits_giveTheSameEvents() throws {
        for seed in UInt64(1)...200 {
            #expect(
                try Self.events(Self.randomChunks(Array(Self.awkwardStream.utf8), seed: seed)) == Self.awkwardEvents,
                "seed \(seed)")
        }
        let recorded = Array(Self.anthropicStream.utf8)
        let whole = try Self.events([recorded])
        #expect(whole.count == 8)
        #expect(
            whole.map(\.event) == [
                "message_start", "content_block_start", "ping", "content_block_delta", "content_block_delta",
                "content_block_stop", "message_delta", "message_stop",
            ])
        for seed in UInt64(1)...50 {
            #expect(try Self.events(Self.randomChunks(recorded, seed: seed)) == whole, "seed \(seed)")
        }
    }

    @Test func sseParser_crlfSplitBetweenChunks_isOneLineEnd() throws {
        var parser = SSEParser()
        #expect(try parser.feed(Array("data: a\r".utf8)).isEmpty)
        #expect(try parser.feed(Array("\n\r".utf8)).isEmpty)
        #expect(try parser.feed(Array("\ndata: b\r\r".utf8)) == [SSEEvent(data: "a")])
        #expect(try parser.feed(Array("x".utf8)) == [SSEEvent(data: "b")])
    }

    @Test func sseParser_oversizedEvent_isRefused() {
        var parser = SSEParser(maxEventBytes: 1024)
        #expect(throws: (any Error).self) {
            _ = try parser.feed(Array("data: ".utf8) + [UInt8](repeating: UInt8(ascii: "x"), count: 2048))
        }
    }

    @Test func sseEvent_bytes_splitsMultiLineData() {
        #expect(SSEEvent(event: "e", data: "a\nb").bytes == Array("event: e\ndata: a\ndata: b\n\n".utf8))
        #expect(SSEEvent(data: "[DONE]").bytes == Array("data: [DONE]\n\n".utf8))
    }

    // MARK: Anthropic → OpenAI

    static func openAIChunk(_ choice: String, id: String = "chatcmpl-msg_01XFDUDYJgAACzvnptvVoYEL") -> String {
        #"data: {"choices":[\#(choice)],"created":1700000000,"id":"\#(id)","model":"claude-3-5-haiku-20241022","object":"chat.completion.chunk"}"#
            + "\n\n"
    }

    static let anthropicAsOpenAI =
        openAIChunk(#"{"delta":{"content":"","role":"assistant"},"finish_reason":null,"index":0,"logprobs":null}"#)
        + openAIChunk(#"{"delta":{"content":"Hello"},"finish_reason":null,"index":0,"logprobs":null}"#)
        + openAIChunk(#"{"delta":{"content":", \"world\"!\n"},"finish_reason":null,"index":0,"logprobs":null}"#)
        + openAIChunk(#"{"delta":{},"finish_reason":"stop","index":0,"logprobs":null}"#)

    static let anthropicAsOpenAIUsage =
        #"data: {"choices":[],"created":1700000000,"id":"chatcmpl-msg_01XFDUDYJgAACzvnptvVoYEL","model":"claude-3-5-haiku-20241022","object":"chat.completion.chunk","usage":{"completion_tokens":15,"prompt_tokens":25,"total_tokens":40}}"#
        + "\n\n"

    @Test func anthropicToOpenAI_withUsage_givesRoleContentFinishUsageDone() throws {
        for seed in UInt64(1)...20 {
            let (text, usage) = try Self.relay(.anthropicToOpenAI(includeUsage: true), Self.anthropicStream, seed: seed)
            #expect(text == Self.anthropicAsOpenAI + Self.anthropicAsOpenAIUsage + "data: [DONE]\n\n", "seed \(seed)")
            #expect(usage == Usage(input: 25, output: 15))
        }
    }

    @Test func anthropicToOpenAI_withoutUsage_stillMetersUsage() throws {
        let (text, usage) = try Self.relay(.anthropicToOpenAI(includeUsage: false), Self.anthropicStream)
        #expect(text == Self.anthropicAsOpenAI + "data: [DONE]\n\n")
        #expect(usage == Usage(input: 25, output: 15))
    }

    @Test func anthropicToOpenAI_maxTokensStop_isLength() throws {
        let stream = Self.anthropicStream.replacingOccurrences(of: "end_turn", with: "max_tokens")
        let (text, _) = try Self.relay(.anthropicToOpenAI(includeUsage: false), stream)
        #expect(text.contains(#""finish_reason":"length""#))
    }

    @Test func anthropicToOpenAI_errorEvent_becomesAnOpenAIErrorChunk() throws {
        let stream =
            Self.anthropicStream.components(separatedBy: "event: content_block_stop")[0]
            + "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"
        let (text, _) = try Self.relay(.anthropicToOpenAI(includeUsage: true), stream)
        let lines = text.components(separatedBy: "\n\n").filter { !$0.isEmpty }
        let last = try JSONParser.parse(Array(lines.last!.dropFirst("data: ".count).utf8))
        #expect(last["error"]?["message"] == .string("Overloaded"))
        #expect(!text.contains("[DONE]"))
    }

    // MARK: OpenAI → Anthropic

    static let openAIAsAnthropic = """
        event: message_start
        data: {"message":{"content":[],"id":"msg_AbC123","model":"gpt-4o-mini-2024-07-18","role":"assistant","stop_reason":null,"stop_sequence":null,"type":"message","usage":{"input_tokens":0,"output_tokens":0}},"type":"message_start"}

        event: content_block_start
        data: {"content_block":{"text":"","type":"text"},"index":0,"type":"content_block_start"}

        event: content_block_delta
        data: {"delta":{"text":"Hi","type":"text_delta"},"index":0,"type":"content_block_delta"}

        event: content_block_delta
        data: {"delta":{"text":" \\"there\\"\\n","type":"text_delta"},"index":0,"type":"content_block_delta"}

        event: content_block_stop
        data: {"index":0,"type":"content_block_stop"}

        event: message_delta
        data: {"delta":{"stop_reason":"end_turn","stop_sequence":null},"type":"message_delta","usage":{"input_tokens":9,"output_tokens":2}}

        event: message_stop
        data: {"type":"message_stop"}


        """

    @Test func openAIToAnthropic_givesTheAnthropicEventSequenceAndUsage() throws {
        for seed in UInt64(1)...20 {
            let (text, usage) = try Self.relay(.openAIToAnthropic, Self.openAIStream, seed: seed)
            #expect(text == Self.openAIAsAnthropic, "seed \(seed)")
            #expect(usage == Usage(input: 9, output: 2))
        }
    }

    @Test func openAIToAnthropic_lengthFinish_isMaxTokens() throws {
        let stream = Self.openAIStream.replacingOccurrences(
            of: #""finish_reason":"stop""#, with: #""finish_reason":"length""#)
        let (text, _) = try Self.relay(.openAIToAnthropic, stream)
        #expect(text.contains(#""stop_reason":"max_tokens""#))
    }

    @Test func openAIToAnthropic_errorChunk_becomesAnAnthropicErrorEvent() throws {
        let stream =
            "data: \(Self.openAIEvents[1])\n\n"
            + #"data: {"error":{"message":"The server had an error","type":"server_error","param":null,"code":null}}"#
            + "\n\n"
        let (text, _) = try Self.relay(.openAIToAnthropic, stream)
        #expect(
            text.hasSuffix(
                #"event: error"# + "\n"
                    + #"data: {"error":{"message":"The server had an error","type":"api_error"},"type":"error"}"#
                    + "\n\n"))
        #expect(!text.contains("message_stop"))
    }

    // MARK: Pass-through

    @Test func openAIPassThrough_clientAskedForUsage_relaysEveryEventAndMeters() throws {
        let (text, usage) = try Self.relay(.openAI(clientWantsUsage: true), Self.openAIStream)
        #expect(text == Self.openAIStream)
        #expect(usage == Usage(input: 9, output: 2))
    }

    @Test func openAIPassThrough_usageTheGatewayAskedFor_isDroppedButMetered() throws {
        let (text, usage) = try Self.relay(.openAI(clientWantsUsage: false), Self.openAIStream)
        var expected = Self.openAIEvents
        expected.remove(at: 4)
        #expect(text == expected.map { "data: \($0)\n\n" }.joined())
        #expect(usage == Usage(input: 9, output: 2))
    }

    @Test func anthropicPassThrough_relaysBytesAndMeters() throws {
        let (text, usage) = try Self.relay(.anthropic, Self.anthropicStream)
        #expect(text == Self.anthropicStream)
        #expect(usage == Usage(input: 25, output: 15))
    }

    @Test func passThrough_marksFirstContent() throws {
        var relay = StreamRelay(mode: .openAI(clientWantsUsage: true), model: "m", createdSeconds: 0)
        _ = relay.relay(SSEEvent(data: Self.openAIEvents[0]))
        #expect(!relay.sawContent)
        _ = relay.relay(SSEEvent(data: Self.openAIEvents[1]))
        #expect(relay.sawContent)
    }
}
