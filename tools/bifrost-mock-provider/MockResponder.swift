import Foundation
import Hummingbird
import Logging
import NIOCore
import Synchronization

/// The provider paths the mock serves, each with its method, its provider and its name in the stats.
enum Endpoint: Sendable, Equatable {
    case chatCompletions
    case embeddings
    case models
    case model(String)
    case messages

    init?(path: String) {
        switch path {
        case "/v1/chat/completions": self = .chatCompletions
        case "/v1/embeddings": self = .embeddings
        case "/v1/models": self = .models
        case "/v1/messages": self = .messages
        default:
            let prefix = "/v1/models/"
            guard path.hasPrefix(prefix), path.utf8.count > prefix.utf8.count else { return nil }
            self = .model(String(path.dropFirst(prefix.count)))
        }
    }

    var statsPath: String {
        switch self {
        case .chatCompletions: "/v1/chat/completions"
        case .embeddings: "/v1/embeddings"
        case .models: "/v1/models"
        case .model: "/v1/models/{model}"
        case .messages: "/v1/messages"
        }
    }

    var method: HTTPRequest.Method {
        switch self {
        case .models, .model: .get
        case .chatCompletions, .embeddings, .messages: .post
        }
    }

    var flavor: Flavor { self == .messages ? .anthropic : .openAI }
}

/// A server-sent-event stream (WHATWG HTML §9.2), cut where the mock pauses: `head` goes out
/// after the latency, each of `pieces` `--stream-chunk-ms` after the one before, and `tail`
/// right after the last piece.
struct EventStream: Sendable {
    var head: ByteBuffer
    var pieces: [ByteBuffer]
    var tail: ByteBuffer

    /// `ended` learns whether the stream was written to its end or cut off by the client.
    func responseBody(interval: Duration, ended: @escaping @Sendable (_ completed: Bool) -> Void) -> ResponseBody {
        guard interval > .zero, pieces.count > 1 else {
            var all = head
            for piece in pieces { all.writeImmutableBuffer(piece) }
            all.writeImmutableBuffer(tail)
            ended(true)
            return ResponseBody(byteBuffer: all)
        }
        return ResponseBody { [self] writer in
            do {
                var first = head
                first.writeImmutableBuffer(pieces[0])
                try await writer.write(first)
                for piece in pieces.dropFirst() {
                    try await Task.sleep(for: interval)
                    try await writer.write(piece)
                }
                try await writer.write(tail)
                try await writer.finish(nil)
            } catch {
                ended(false)
                throw error
            }
            ended(true)
        }
    }
}

/// A successful answer of an endpoint, before the shell adds headers and latency.
struct Reply: Sendable {
    enum Body: Sendable {
        case json(ByteBuffer)
        case events(EventStream)
    }

    var body: Body
    /// The requested model, for the stats.
    var model: String?
}

/// The shell around `MockState`: reads requests, asks the state for verdicts under one lock,
/// sleeps the latency, and renders responses. Everything per request is a few small buffers.
final class MockProvider: Sendable {
    /// Request bodies above this get 413.
    static let bodyBytesMax = 8 << 20

    let settings: MockSettings
    let logger: Logger
    private let state: Mutex<MockState>
    private let sequence = Atomic<UInt64>(0)
    private let nowSeconds: @Sendable () -> Int64

    init(
        settings: MockSettings, logger: Logger,
        nowSeconds: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970) }
    ) {
        self.settings = settings
        self.logger = logger
        self.state = Mutex(MockState(settings: settings))
        self.nowSeconds = nowSeconds
    }

    // MARK: Provider paths

    func respond(to request: Request, endpoint: Endpoint) async -> Response {
        let flavor = endpoint.flavor
        let key = Self.apiKey(request.headers, flavor)
        let keySuffix = Self.suffix(of: key)
        let now = nowSeconds()
        let id = sequence.add(1, ordering: .relaxed).newValue
        var rateLimit: RateLimitStatus?
        let outcome: Result<Reply, MockError>

        if let forced = request.headers[HeaderName.mockStatus].flatMap(Int.init), (400...599).contains(forced) {
            if forced == 429 { rateLimit = state.withLock { $0.forcedRateLimit(nowSeconds: now) } }
            outcome = .failure(.forced(forced))
        } else if request.method != endpoint.method {
            outcome = .failure(
                MockError(status: 405, message: "Method \(request.method) is not allowed on \(request.uri.path)."))
        } else if let key {
            let fault = state.withLock { $0.keyFaults[keySuffix] }
            if key.hasPrefix("bad-") {
                outcome = .failure(.invalidKey(flavor, suffix: keySuffix))
            } else if let status = fault?.status {
                outcome = .failure(.forced(status))
            } else {
                let admission = state.withLock { $0.onRequest(nowSeconds: now) }
                rateLimit = admission.rateLimit
                switch admission.verdict {
                case .rateLimited: outcome = .failure(.rateLimited(admission.rateLimit!))
                case .injectedError: outcome = .failure(.injected(flavor))
                case .proceed: outcome = await handle(request, endpoint, id: id, now: now)
                }
            }
        } else {
            outcome = .failure(.missingKey(flavor))
        }

        let keyLatency = state.withLock {
            $0.keyFaults[Self.suffix(of: Self.apiKey(request.headers, endpoint.flavor))]
        }?
        .latency
        let latency =
            request.headers[HeaderName.mockLatencyMs].flatMap(Int.init).map { Duration.milliseconds($0) }
            ?? keyLatency ?? settings.latency
        if latency > .zero {
            try? await Task.sleep(for: latency)
        }

        var headers = HTTPFields()
        headers.reserveCapacity(8)
        let status: Int
        let body: ResponseBody
        var model: String?
        switch outcome {
        case .success(let reply):
            status = 200
            model = reply.model
            switch reply.body {
            case .json(let buffer):
                headers[.contentType] = "application/json"
                body = ResponseBody(byteBuffer: buffer)
            case .events(let stream):
                headers[.contentType] = "text/event-stream"
                headers[.cacheControl] = "no-cache"
                body = stream.responseBody(interval: settings.streamChunkInterval) { [self] completed in
                    state.withLock { $0.onStreamEnded(completed: completed) }
                }
            }
        case .failure(let error):
            status = error.status
            model = nil
            headers[.contentType] = "application/json"
            body = ResponseBody(byteBuffer: error.body(flavor))
        }
        headers[flavor == .openAI ? HeaderName.openAIRequestID : HeaderName.anthropicRequestID] = "req_mock\(id)"
        if let rateLimit { Self.addRateLimitHeaders(rateLimit, status: status, flavor: flavor, to: &headers) }

        state.withLock { $0.onResponse(path: endpoint.statsPath, status: status, keySuffix: keySuffix, model: model) }
        logger.debug(
            "request",
            metadata: [
                "http.path": "\(request.uri.path)", "http.status": "\(status)", "key.suffix": "\(keySuffix)",
            ])
        return Response(status: .init(code: status), headers: headers, body: body)
    }

    /// Reads and decodes the body, then lets the endpoint answer.
    private func handle(
        _ request: Request, _ endpoint: Endpoint, id: UInt64, now: Int64
    ) async -> Result<
        Reply, MockError
    > {
        let flavor = endpoint.flavor
        if case .models = endpoint { return .success(Reply(body: .json(OpenAIAPI.modelList))) }
        if case .model(let name) = endpoint { return Result { () throws(MockError) in try OpenAIAPI.model(name) } }
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: Self.bodyBytesMax)
        } catch {
            return .failure(
                MockError(status: 413, message: "Request body is larger than \(Self.bodyBytesMax) bytes."))
        }
        return Result { () throws(MockError) in
            switch endpoint {
            case .chatCompletions:
                try OpenAIAPI.chatCompletion(parse(body, flavor, OpenAIAPI.ChatRequest.read), id: id, created: now)
            case .embeddings:
                try OpenAIAPI.embeddings(parse(body, flavor, OpenAIAPI.EmbeddingsRequest.read))
            case .messages:
                try AnthropicAPI.message(parse(body, flavor, AnthropicAPI.MessagesRequest.read), id: id)
            case .models, .model:
                preconditionFailure("\(endpoint) has no body and is answered above")
            }
        }
    }

    /// Reads a request body with `read`; malformed JSON and wrong field types are 400s naming the field.
    private func parse<T>(
        _ body: ByteBuffer, _ flavor: Flavor, _ read: (inout JSONReader) throws(JSONReader.Failure) -> T
    ) throws(MockError) -> T {
        let result = body.withUnsafeReadableBytes { bytes in
            Result { () throws(JSONReader.Failure) in try JSONReader.parse(bytes, read) }
        }
        switch result {
        case .success(let value): return value
        case .failure(.malformed(let detail)): throw .malformedJSON(flavor, detail: detail)
        case .failure(.missing(let field)): throw .missing(field, flavor)
        case .failure(.wrongType(let field, let expected)): throw .invalid(field, "expected \(expected).", flavor)
        }
    }

    /// The key from `Authorization: Bearer <key>` (OpenAI) or `x-api-key` (Anthropic); `nil`
    /// when absent or empty. The Anthropic path also takes a bearer key, because recent
    /// `anthropic` SDKs (2.x) send `api_key` as `Authorization: Bearer`.
    static func apiKey(_ headers: HTTPFields, _ flavor: Flavor) -> String? {
        if flavor == .anthropic, let key = headers[HeaderName.apiKey], !key.isEmpty { return key }
        guard let value = headers[.authorization] else { return nil }
        // "Bearer" is case-insensitive (RFC 9110 §11.1); compare bytes, this runs on every request.
        let utf8 = value.utf8
        let scheme = "bearer ".utf8
        guard utf8.count > scheme.count, zip(utf8, scheme).allSatisfy({ $0 | 0x20 == $1 }) else { return nil }
        let key = utf8.dropFirst(scheme.count).drop { $0 == UInt8(ascii: " ") }
        guard !key.isEmpty else { return nil }
        return String(Substring(key))
    }

    /// The stats' name for a key: its last 4 characters, `<short>` for keys of 4 or fewer (which
    /// would otherwise appear whole), `<none>` without a key.
    static func suffix(of key: String?) -> String {
        guard let key else { return "<none>" }
        guard key.utf8.count > 4 else { return "<short>" }
        return String(key.suffix(4))
    }

    /// `x-ratelimit-{limit,remaining,reset}-requests` as OpenAI sends them, Anthropic's
    /// `anthropic-ratelimit-requests-*` on its path, and `retry-after` on 429.
    private static func addRateLimitHeaders(
        _ limit: RateLimitStatus, status: Int, flavor: Flavor, to headers: inout HTTPFields
    ) {
        if let total = limit.limit { headers[HeaderName.rateLimitLimit] = String(total) }
        headers[HeaderName.rateLimitRemaining] = String(limit.remaining)
        headers[HeaderName.rateLimitReset] = "\(limit.resetAfterSeconds)s"
        if flavor == .anthropic {
            if let total = limit.limit { headers[HeaderName.anthropicLimit] = String(total) }
            headers[HeaderName.anthropicRemaining] = String(limit.remaining)
            headers[HeaderName.anthropicReset] = Date(timeIntervalSince1970: Double(limit.resetAtSeconds))
                .formatted(.iso8601)
        }
        if status == 429 { headers[HeaderName.retryAfter] = String(limit.resetAfterSeconds) }
    }

    // MARK: Mock paths

    /// Counts a request to a path the mock does not serve (a 404), so tests see misrouted calls.
    func recordUnknown(path: String, status: Int, headers: HTTPFields) {
        let keySuffix = Self.suffix(of: Self.apiKey(headers, .anthropic))
        state.withLock { $0.onResponse(path: path, status: status, keySuffix: keySuffix, model: nil) }
    }

    func statsResponse() -> Response {
        let body = state.withLock { $0.stats }.json()
        return Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: body))
    }

    /// `PUT /mock/keys/{suffix}` with `{"status": 500}` and/or `{"latency_ms": 300}` makes the
    /// requests of the key ending in `suffix` fail or slow down; `DELETE` clears it.
    func setKeyFault(_ request: Request, suffix: String) async -> Response {
        var fault: KeyFault?
        if request.method == .put {
            let body = (try? await request.body.collect(upTo: 4096)).map { Array(buffer: $0) } ?? []
            let object = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] ?? [:]
            let status = (object["status"] as? NSNumber)?.intValue
            let latency = (object["latency_ms"] as? NSNumber).map { Duration.milliseconds($0.intValue) }
            guard status.map({ (400...599).contains($0) }) ?? true, status != nil || latency != nil else {
                let error = MockError(
                    status: 400, message: #"expected {"status": 400...599} and/or {"latency_ms": N}"#)
                return Response(
                    status: .badRequest, headers: [.contentType: "application/json"],
                    body: ResponseBody(byteBuffer: error.body(.openAI)))
            }
            fault = KeyFault(status: status, latency: latency)
        }
        state.withLock { $0.setFault(fault, keySuffix: suffix) }
        return Self.okResponse
    }

    func resetStats() -> Response {
        state.withLock { $0.onReset() }
        return Self.okResponse
    }

    static var okResponse: Response {
        Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: okBody))
    }

    private static let okBody = ByteBuffer(string: #"{"status":"ok"}"#)
}

/// Header names the mock reads or writes beyond the standard ones.
enum HeaderName {
    /// `HTTPField.Name`, reached through the `HTTPFields` Hummingbird re-exports.
    typealias Name = HTTPFields.Element.Name

    static let mockStatus = Name("x-mock-status")!
    static let mockLatencyMs = Name("x-mock-latency-ms")!
    static let apiKey = Name("x-api-key")!
    static let openAIRequestID = Name("x-request-id")!
    static let anthropicRequestID = Name("request-id")!
    static let retryAfter = Name("retry-after")!
    static let rateLimitLimit = Name("x-ratelimit-limit-requests")!
    static let rateLimitRemaining = Name("x-ratelimit-remaining-requests")!
    static let rateLimitReset = Name("x-ratelimit-reset-requests")!
    static let anthropicLimit = Name("anthropic-ratelimit-requests-limit")!
    static let anthropicRemaining = Name("anthropic-ratelimit-requests-remaining")!
    static let anthropicReset = Name("anthropic-ratelimit-requests-reset")!
}

/// Routes by exact path: the provider paths go through `MockProvider`, the rest are the mock's own.
struct MockResponder: HTTPResponder {
    typealias Context = BasicRequestContext

    let provider: MockProvider

    func respond(to request: Request, context: Context) async throws -> Response {
        let path = request.uri.path
        if let endpoint = Endpoint(path: path) {
            return await provider.respond(to: request, endpoint: endpoint)
        }
        switch (request.method, path) {
        case (.get, "/health"): return MockProvider.okResponse
        case (.get, "/mock/stats"): return provider.statsResponse()
        case (.post, "/mock/reset"): return provider.resetStats()
        case (.put, _) where path.hasPrefix("/mock/keys/"), (.delete, _) where path.hasPrefix("/mock/keys/"):
            return await provider.setKeyFault(request, suffix: String(path.dropFirst("/mock/keys/".count)))
        default:
            let flavor: Flavor = path.hasPrefix("/v1/messages") ? .anthropic : .openAI
            let error = MockError(status: 404, message: "Invalid URL (\(request.method) \(path))")
            provider.recordUnknown(path: path, status: 404, headers: request.headers)
            return Response(
                status: .notFound, headers: [.contentType: "application/json"],
                body: ResponseBody(byteBuffer: error.body(flavor)))
        }
    }
}
