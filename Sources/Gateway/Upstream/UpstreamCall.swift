import NIOCore
import NIOHTTP1

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
    /// The whole call's bound, streams included.
    public var timeout: Duration
    public var connectTimeout: Duration
    /// Certificate authorities for an `https` URL instead of the system's (a PEM file).
    public var caFile: String?
    /// The response is read whole, up to this many bytes, before the call returns (a call whose
    /// answer is not relayed as it arrives); nil: the body streams.
    public var wholeBodyLimit: Int?

    public init(
        url: String, headers: HTTPHeaders, body: [UInt8], timeout: Duration, connectTimeout: Duration = .seconds(5),
        caFile: String? = nil, wholeBodyLimit: Int? = nil
    ) {
        self.url = url
        self.headers = headers
        self.body = body
        self.timeout = timeout
        self.connectTimeout = connectTimeout
        self.caFile = caFile
        self.wholeBodyLimit = wholeBodyLimit
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

    /// Builds the upstream call for a body already in the provider's API. The answer to a call
    /// that does not stream is read whole, up to `wholeBodyLimit` bytes.
    public func call(
        _ endpoint: UpstreamEndpoint, api: WireAPI, secret: String, body: [UInt8], stream: Bool,
        wholeBodyLimit: Int = 64 << 20
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
        return UpstreamCall(
            url: url, headers: headers, body: body, timeout: timeout, connectTimeout: connectTimeout, caFile: caFile,
            wholeBodyLimit: stream ? nil : wholeBodyLimit)
    }
}
