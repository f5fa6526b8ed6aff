import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
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
    /// The whole call's bound, streams included.
    public var timeout: Duration
    public var connectTimeout: Duration
    /// Certificate authorities for an `https` URL instead of the system's (a PEM file).
    public var caFile: String?

    public init(
        url: String, headers: HTTPHeaders, body: [UInt8], timeout: Duration, connectTimeout: Duration = .seconds(5),
        caFile: String? = nil
    ) {
        self.url = url
        self.headers = headers
        self.body = body
        self.timeout = timeout
        self.connectTimeout = connectTimeout
        self.caFile = caFile
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
        return UpstreamCall(
            url: url, headers: headers, body: body, timeout: timeout, connectTimeout: connectTimeout, caFile: caFile)
    }
}

/// An upstream response whose body is still streaming.
public struct UpstreamResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: UpstreamBody
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

/// The HTTP/1.1 client every upstream call goes through: one `UpstreamPool` of keep-alive
/// connections per event loop, TLS (NIOSSL, the system's trust roots, SNI) for `https` origins.
/// A call runs on the pool of the loop its task is on. A `Service`, so idle connections close
/// on shutdown.
public final class UpstreamClient: Service, Sendable {
    let group: any EventLoopGroup
    private let pools: [ObjectIdentifier: NIOLoopBoundBox<UpstreamPool>]
    /// TLS with the system's trust roots, and with each `network.ca_file` seen so far.
    private let systemTLS: NIOSSLContext
    private let customTLS = Mutex<[String: NIOSSLContext]>([:])
    private let blackholed = Atomic<Bool>(false)

    /// Fault injection (tests and drills): every provider call fails as unreachable while set.
    /// Calls to peers and webhooks are not affected.
    public func setProvidersBlackholed(_ on: Bool) { blackholed.store(on, ordering: .relaxed) }

    /// - Parameters:
    ///   - connectionsPerHost: the most connections to one origin from one event loop.
    public init(
        connectionsPerHost: Int = 256, idleTimeout: Duration = .seconds(60),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) throws {
        self.group = group
        systemTLS = try NIOSSLContext(configuration: .makeClientConfiguration())
        var pools: [ObjectIdentifier: NIOLoopBoundBox<UpstreamPool>] = [:]
        for loop in group.makeIterator() {
            pools[ObjectIdentifier(loop)] = NIOLoopBoundBox.makeBoxSendingValue(
                UpstreamPool(
                    loop: loop, maxConnectionsPerOrigin: max(1, connectionsPerHost),
                    idleTimeout: TimeAmount(idleTimeout)),
                eventLoop: loop)
        }
        self.pools = pools
    }

    public func run() async throws {
        try? await gracefulShutdown()
    }

    /// Sends a call; the response body streams on. Throws `UpstreamFailure`. `provider` is false
    /// for calls to peers and webhooks, which fault injection leaves alone.
    public func send(_ call: UpstreamCall, provider: Bool = true) async throws(UpstreamFailure) -> UpstreamResponse {
        if provider && blackholed.load(ordering: .relaxed) {
            throw .connectFailed("provider address blackholed by fault injection")
        }
        guard var (origin, target) = UpstreamOrigin.parse(call.url) else {
            throw .other("not an http or https URL: \(call.url)")
        }
        origin.caFile = origin.secure ? call.caFile : nil
        let tls = origin.secure ? try tlsContext(caFile: origin.caFile) : nil
        let loop = MultiThreadedEventLoopGroup.currentEventLoop ?? group.next()
        guard let pool = pools[ObjectIdentifier(loop)] ?? pools.values.first else {
            throw .other("no event loop to call on")
        }
        var headers = call.headers
        headers.replaceOrAdd(name: "host", value: origin.hostHeader)
        headers.replaceOrAdd(name: "content-length", value: String(call.body.count))
        let exchange = UpstreamExchange(
            origin: origin, head: HTTPRequestHead(version: .http1_1, method: .POST, uri: target, headers: headers),
            body: ByteBuffer(bytes: call.body), timeout: TimeAmount(call.timeout),
            connectTimeout: TimeAmount(call.connectTimeout), tls: tls,
            promise: loop.makePromise(of: UpstreamResponse.self))
        do {
            return try await withTaskCancellationHandler {
                if loop.inEventLoop {
                    pool.value.execute(exchange)
                } else {
                    loop.execute { pool.value.execute(exchange) }
                }
                return try await exchange.promise.futureResult.get()
            } onCancel: {
                loop.execute { pool.value.cancel(exchange) }
            }
        } catch let failure as UpstreamFailure {
            throw failure
        } catch {
            throw .other("\(error)")
        }
    }

    private func tlsContext(caFile: String?) throws(UpstreamFailure) -> NIOSSLContext {
        guard let caFile else { return systemTLS }
        if let made = customTLS.withLock({ $0[caFile] }) { return made }
        do {
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.trustRoots = .file(caFile)
            let made = try NIOSSLContext(configuration: configuration)
            customTLS.withLock { $0[caFile] = made }
            return made
        } catch {
            throw .connectFailed("cannot use the certificate authorities in \(caFile) (\(error))")
        }
    }
}
