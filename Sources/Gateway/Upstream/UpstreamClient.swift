import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import ServiceLifecycle
import Synchronization

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

    /// A call under way on one event loop.
    public struct Started: Sendable {
        /// Completes on the loop with the answer's head (a whole answer: with its body), or
        /// fails with an `UpstreamFailure`.
        public let response: EventLoopFuture<UpstreamResponse>
        let loop: any EventLoop
        let pool: NIOLoopBoundBox<UpstreamPool>?
        let exchange: UpstreamExchange?

        /// Stops the call: a waiting call leaves the queue, a running one closes its connection;
        /// `response` fails with `cancelled` unless it already completed.
        public func cancel() {
            guard let pool, let exchange else { return }
            if loop.inEventLoop {
                pool.value.cancel(exchange)
            } else {
                loop.execute { pool.value.cancel(exchange) }
            }
        }
    }

    /// Starts a call on `loop`'s pool; best called on `loop`, where the request is. `provider`
    /// is false for calls to peers and webhooks, which fault injection leaves alone.
    public func start(_ call: UpstreamCall, on requestLoop: any EventLoop, provider: Bool = true) -> Started {
        // A loop outside the client's group calls on one of the group's.
        let loop = pools[ObjectIdentifier(requestLoop)] == nil ? group.next() : requestLoop
        func failed(_ failure: UpstreamFailure) -> Started {
            Started(response: loop.makeFailedFuture(failure), loop: loop, pool: nil, exchange: nil)
        }
        if provider && blackholed.load(ordering: .relaxed) {
            return failed(.connectFailed("provider address blackholed by fault injection"))
        }
        guard let pool = pools[ObjectIdentifier(loop)] else { return failed(.other("no event loop to call on")) }
        guard let parsed = loop.inEventLoop ? pool.value.route(call.url) : UpstreamOrigin.parse(call.url) else {
            return failed(.other("not an http or https URL: \(call.url)"))
        }
        var origin = parsed.origin
        origin.caFile = origin.secure ? call.caFile : nil
        let tls: NIOSSLContext?
        do {
            tls = origin.secure ? try tlsContext(caFile: origin.caFile) : nil
        } catch {
            return failed(error)
        }
        var headers = call.headers
        headers.replaceOrAdd(name: "host", value: origin.hostHeader)
        headers.replaceOrAdd(name: "content-length", value: String(call.body.count))
        let exchange = UpstreamExchange(
            origin: origin,
            head: HTTPRequestHead(version: .http1_1, method: .POST, uri: parsed.target, headers: headers),
            body: ByteBuffer(bytes: call.body), timeout: TimeAmount(call.timeout),
            connectTimeout: TimeAmount(call.connectTimeout), tls: tls, wholeBodyLimit: call.wholeBodyLimit,
            promise: loop.makePromise(of: UpstreamResponse.self))
        if loop.inEventLoop {
            pool.value.execute(exchange)
        } else {
            loop.execute { pool.value.execute(exchange) }
        }
        return Started(response: exchange.promise.futureResult, loop: loop, pool: pool, exchange: exchange)
    }

    /// Sends a call from a task; the response body streams on. Throws `UpstreamFailure`; a
    /// cancelled task cancels the call.
    public func send(_ call: UpstreamCall, provider: Bool = true) async throws(UpstreamFailure) -> UpstreamResponse {
        let loop = MultiThreadedEventLoopGroup.currentEventLoop ?? group.next()
        let started = start(call, on: loop, provider: provider)
        do {
            return try await withTaskCancellationHandler {
                // Resumed on this task's executor, where `futureResult.get()` would hop off it and back.
                try await withCheckedThrowingContinuation { continuation in
                    started.response.whenComplete { continuation.resume(with: $0) }
                }
            } onCancel: {
                started.cancel()
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
