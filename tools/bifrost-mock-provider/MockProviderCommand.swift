import ArgumentParser
import Foundation
import Hummingbird
import Logging

@main
struct MockProviderCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bifrost-mock-provider",
        abstract: "A mock of the OpenAI and Anthropic HTTP APIs, the upstream for gateway tests and benchmarks.",
        discussion: """
            Serves POST /v1/chat/completions, POST /v1/embeddings, GET /v1/models (OpenAI) and \
            POST /v1/messages (Anthropic), as JSON or streamed ("stream": true), in the shapes the \
            official Python SDKs parse. Replies are deterministic: "Mock reply to: " and the first \
            40 characters of the last user message; about 4 bytes of text count as one token, and a \
            smaller max_tokens cuts the reply (finish_reason "length" / stop_reason "max_tokens"). \
            Embeddings are unit vectors hashed from the text (8 dimensions unless "dimensions").

            OpenAI paths need "Authorization: Bearer <key>", the Anthropic path "x-api-key: <key>" \
            (or a bearer key, which recent anthropic SDKs send); \
            a missing key, or one starting with "bad-", gets 401. Headers a test can send:
              x-mock-status: <400-599>   reply with that status and the error body
              x-mock-latency-ms: <n>     wait n ms instead of --latency-ms

            Checks run in this order: x-mock-status, method, key, rate limit, --error-rate, body.

            The mock's own paths: GET /health answers {"status":"ok"}; GET /mock/stats counts \
            requests by path, status, model and key (only the key's last 4 characters); POST \
            /mock/reset clears those counters. PUT /mock/keys/<last 4 characters of a key> with             {"status": 503} and/or {"latency_ms": 400} makes that upstream key fail or slow down             (a key fault, checked after the key); DELETE on the same path clears it.

            Once it accepts connections it prints one line to standard output, \
            "bifrost-mock-provider listening on http://HOST:PORT", and it serves until SIGTERM or \
            SIGINT. Logs go to standard error.

            Examples:
              bifrost-mock-provider --port 9001
              bifrost-mock-provider --port 9001 --latency-ms 300 --stream-chunk-ms 25
              bifrost-mock-provider --port 9001 --error-rate 0.05 --rate-limit-rpm 600
            """)

    @Option(help: "TCP port to listen on; 0 picks a free one (the printed line says which).")
    var port: Int

    @Option(help: "Address to bind.")
    var host = "127.0.0.1"

    @Option(
        name: .customLong("latency-ms"),
        help: "Milliseconds to wait before each /v1 response, errors included (for a stream: before the first event).")
    var latencyMs = 0

    @Option(name: .customLong("stream-chunk-ms"), help: "Milliseconds between the content events of a stream.")
    var streamChunkMs = 0

    @Option(
        name: .customLong("error-rate"),
        help: "Fraction in [0, 1] of /v1 requests answered with 500 and an error body, drawn from the seeded RNG.")
    var errorRate = 0.0

    @Option(
        name: .customLong("rate-limit-rpm"),
        help: ArgumentHelp(
            "Answer 429 once more than N requests arrive in the current 60-second window.",
            discussion:
                "Windows are wall-clock minutes; 429s carry retry-after and x-ratelimit-* headers. Off by default."
        ))
    var rateLimitRPM: Int?

    @Option(help: "Seed of the RNG behind --error-rate, so a run with one sequential client fails the same requests.")
    var seed: UInt64 = 1

    @Option(help: "Log level on standard error: trace, debug (one line per request), info, notice, warning, error.")
    var logLevel = "info"

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be in 0...65535, got \(port)") }
        guard latencyMs >= 0 else { throw ValidationError("--latency-ms must be 0 or more, got \(latencyMs)") }
        guard streamChunkMs >= 0 else {
            throw ValidationError("--stream-chunk-ms must be 0 or more, got \(streamChunkMs)")
        }
        guard (0.0...1.0).contains(errorRate) else {
            throw ValidationError("--error-rate must be in [0, 1], got \(errorRate)")
        }
        if let rateLimitRPM, rateLimitRPM < 1 {
            throw ValidationError("--rate-limit-rpm must be 1 or more, got \(rateLimitRPM)")
        }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError(
                "--log-level '\(logLevel)' is not one of trace, debug, info, notice, warning, error, critical")
        }
    }

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel)!
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "bifrost-mock-provider")
        let settings = MockSettings(
            latency: .milliseconds(latencyMs), streamChunkInterval: .milliseconds(streamChunkMs), errorRate: errorRate,
            rateLimitRPM: rateLimitRPM, seed: seed)
        let provider = MockProvider(settings: settings, logger: logger)
        let host = self.host
        let port = self.port
        let app = Application(
            responder: MockResponder(provider: provider),
            configuration: ApplicationConfiguration(address: .hostname(host, port: port)),
            onServerRunning: { channel in
                let bound = channel.localAddress?.port ?? port
                FileHandle.standardOutput.write(
                    Data("bifrost-mock-provider listening on http://\(host):\(bound)\n".utf8))
            },
            logger: logger)
        try await app.runService()
    }
}
