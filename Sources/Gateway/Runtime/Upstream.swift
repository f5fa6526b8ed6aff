import AsyncHTTPClient
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Synchronization

/// The API a request or a provider speaks.
public enum WireAPI: Sendable, Hashable {
    case openAI
    case anthropic
}

/// Where and how to reach one provider key for one kind of call.
public struct UpstreamCall: Sendable {
    public var url: String
    public var headers: HTTPHeaders
    public var body: [UInt8]
    public var timeout: Duration

    public init(url: String, headers: HTTPHeaders, body: [UInt8], timeout: Duration) {
        self.url = url
        self.headers = headers
        self.body = body
        self.timeout = timeout
    }
}

/// What kind of call the gateway makes upstream.
public enum UpstreamEndpoint: Sendable {
    case chatCompletions
    case embeddings
    case messages
}

extension BifrostConfig.Provider {
    /// The API this provider speaks for an endpoint: OpenAI-type providers speak OpenAI,
    /// Anthropic ones the Messages API, and the mock both natively.
    public func api(for endpoint: UpstreamEndpoint) -> WireAPI {
        switch type {
        case .openai: .openAI
        case .anthropic: .anthropic
        case .mock: endpoint == .messages ? .anthropic : .openAI
        }
    }

    /// Base URL with the documented defaults: OpenAI's includes `/v1`, Anthropic's and the
    /// mock's do not.
    var resolvedBaseURL: String {
        var base = baseURL ?? (type == .anthropic ? "https://api.anthropic.com" : "https://api.openai.com/v1")
        while base.hasSuffix("/") { base.removeLast() }
        return base
    }

    /// Builds the upstream call for a body already in the provider's API.
    public func call(
        _ endpoint: UpstreamEndpoint, api: WireAPI, secret: String, body: [UInt8], stream: Bool
    ) -> UpstreamCall {
        var headers = HTTPHeaders()
        headers.reserveCapacity(5)
        headers.add(name: "content-type", value: "application/json")
        headers.add(name: "accept", value: stream ? "text/event-stream" : "application/json")
        let base = resolvedBaseURL
        let url: String
        switch api {
        case .openAI:
            headers.add(name: "authorization", value: "Bearer \(secret)")
            let root = type == .mock ? "\(base)/v1" : base
            url = endpoint == .embeddings ? "\(root)/embeddings" : "\(root)/chat/completions"
        case .anthropic:
            headers.add(name: "x-api-key", value: secret)
            headers.add(name: "anthropic-version", value: "2023-06-01")
            url = "\(base)/v1/messages"
        }
        return UpstreamCall(url: url, headers: headers, body: body, timeout: timeout)
    }
}

/// An upstream response whose body is still streaming.
public struct UpstreamResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: HTTPClientResponse.Body
}

/// Why an upstream call produced no response.
public enum UpstreamFailure: Error, Sendable, CustomStringConvertible {
    case timeout
    case connectFailed(String)
    case cancelled
    case other(String)

    var isTimeout: Bool {
        if case .timeout = self { return true }
        return false
    }

    public var description: String {
        switch self {
        case .timeout: "the provider did not answer in time"
        case .connectFailed(let detail): "cannot connect to the provider (\(detail))"
        case .cancelled: "the request was cancelled"
        case .other(let detail): "the provider call failed (\(detail))"
        }
    }
}

/// The pooled HTTP client every upstream call goes through (keep-alive connections per host,
/// TLS for https providers). A `Service`, so the pool closes on shutdown.
public final class UpstreamClient: Service, Sendable {
    public let http: HTTPClient
    private let blackholed = Atomic<Bool>(false)

    /// Fault injection (tests and drills): every provider call fails as unreachable while set.
    /// Calls to peers (`migrate`) are not affected.
    public func setProvidersBlackholed(_ on: Bool) { blackholed.store(on, ordering: .relaxed) }

    public init(connectTimeout: Duration = .seconds(5), connectionsPerHost: Int = 256) {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool = .init(
            idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: connectionsPerHost)
        configuration.timeout.connect = .nanoseconds(Int64(connectTimeout.components.seconds) * 1_000_000_000)
        configuration.decompression = .disabled
        configuration.redirectConfiguration = .disallow
        // No request spans: with no tracer bootstrapped they would only cost a URL parse per call.
        configuration.tracing.tracer = nil
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    public func run() async throws {
        try? await gracefulShutdown()
        try await http.shutdown()
    }

    /// Sends a call; the response body streams on. Throws `UpstreamFailure`.
    public func send(_ call: UpstreamCall, toPeer: Bool = false) async throws(UpstreamFailure) -> UpstreamResponse {
        if !toPeer && blackholed.load(ordering: .relaxed) {
            throw .connectFailed("provider address blackholed by fault injection")
        }
        var request = HTTPClientRequest(url: call.url)
        request.method = .POST
        request.headers = call.headers
        request.body = .bytes(ByteBuffer(bytes: call.body))
        let (seconds, attoseconds) = call.timeout.components
        let deadline = NIODeadline.now() + .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
        do {
            let response = try await http.execute(request, deadline: deadline)
            return UpstreamResponse(status: Int(response.status.code), headers: response.headers, body: response.body)
        } catch {
            throw Self.classify(error)
        }
    }

    static func classify(_ error: any Error) -> UpstreamFailure {
        if error is CancellationError { return .cancelled }
        if let e = error as? HTTPClientError {
            switch e {
            case .deadlineExceeded, .readTimeout, .writeTimeout: return .timeout
            case .connectTimeout: return .connectFailed("connect timeout")
            case .cancelled: return .cancelled
            default: return .other("\(e)")
            }
        }
        if error is ChannelError { return .connectFailed("\(error)") }
        let text = "\(error)"
        if text.contains("connect") || text.contains("Connection refused") { return .connectFailed(text) }
        return .other(text)
    }
}
