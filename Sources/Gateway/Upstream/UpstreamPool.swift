import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// The keep-alive connections of one event loop to every provider origin. A call runs on the
/// loop its task runs on (the node's Swift tasks run on the NIO loops), so the client's
/// connection, the request and its upstream connection share one thread. Used only on its loop.
///
/// At most `maxConnectionsPerOrigin` connections per origin; calls beyond wait, first come first
/// served, for one to come free.
final class UpstreamPool {
    let loop: any EventLoop
    let maxConnectionsPerOrigin: Int
    let idleTimeout: TimeAmount
    private var idle: [UpstreamOrigin: [UpstreamConnection]] = [:]
    private var open: [UpstreamOrigin: Int] = [:]
    private var waiting: [UpstreamOrigin: [UpstreamExchange]] = [:]
    /// Parsed URLs: a node calls the same few URLs (one per provider and endpoint) again and again.
    private var routes: [String: (origin: UpstreamOrigin, target: String)] = [:]
    static let maxRoutes = 256

    init(
        loop: any EventLoop, maxConnectionsPerOrigin: Int, idleTimeout: TimeAmount
    ) {
        self.loop = loop
        self.maxConnectionsPerOrigin = maxConnectionsPerOrigin
        self.idleTimeout = idleTimeout
    }

    /// The origin and request target of `url` (`UpstreamOrigin.parse`), remembered.
    func route(_ url: String) -> (origin: UpstreamOrigin, target: String)? {
        if let known = routes[url] { return known }
        guard let parsed = UpstreamOrigin.parse(url) else { return nil }
        if routes.count >= Self.maxRoutes { routes.removeAll(keepingCapacity: true) }
        routes[url] = parsed
        return parsed
    }

    /// Connections open now to `origin` (idle and busy).
    func openConnections(to origin: UpstreamOrigin) -> Int { open[origin] ?? 0 }

    func execute(_ exchange: UpstreamExchange) {
        loop.preconditionInEventLoop()
        guard !exchange.cancelled else { return exchange.promise.fail(UpstreamFailure.cancelled) }
        let origin = exchange.origin
        while let connection = idle[origin]?.popLast() {
            if connection.isIdle { return connection.start(exchange) }
        }
        if open[origin, default: 0] < maxConnectionsPerOrigin {
            connect(origin, for: exchange)
        } else {
            waiting[origin, default: []].append(exchange)
        }
    }

    /// A waiting call whose task was cancelled leaves the queue; a running one closes its
    /// connection.
    func cancel(_ exchange: UpstreamExchange) {
        exchange.cancelled = true
        if let connection = exchange.connection {
            connection.cancel(exchange)
        } else if let index = waiting[exchange.origin]?.firstIndex(where: { $0 === exchange }) {
            waiting[exchange.origin]!.remove(at: index)
            exchange.promise.fail(UpstreamFailure.cancelled)
        }
    }

    private func connect(_ origin: UpstreamOrigin, for exchange: UpstreamExchange) {
        open[origin, default: 0] += 1
        let tls = origin.secure ? exchange.tls : nil
        let idleTimeout = self.idleTimeout
        ClientBootstrap(group: loop)
            .connectTimeout(exchange.connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.autoRead, value: false)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    if let tls {
                        try pipeline.addHandler(
                            NIOSSLClientHandler(context: tls, serverHostname: origin.isIPAddress ? nil : origin.host))
                    }
                    try pipeline.addHTTPClientHandlers()
                    try pipeline.addHandler(UpstreamConnection(origin: origin, idleTimeout: idleTimeout))
                }
            }
            .connect(host: origin.host, port: origin.port)
            .assumeIsolated()
            .whenComplete { [self] result in
                switch result {
                case .success(let channel):
                    guard let connection = try? channel.pipeline.syncOperations.handler(type: UpstreamConnection.self)
                    else {
                        channel.close(promise: nil)
                        return connectFailed(origin, exchange, "the connection could not be set up")
                    }
                    // Weak: a connection can outlive its client (and this pool), and closes
                    // later on its idle timeout.
                    connection.onReleased = { [weak self] in self?.released($0) }
                    connection.onClosed = { [weak self] in self?.closed($0) }
                    connection.start(exchange)
                case .failure(let error):
                    connectFailed(origin, exchange, Self.describe(error))
                }
            }
    }

    private func connectFailed(_ origin: UpstreamOrigin, _ exchange: UpstreamExchange, _ detail: String) {
        open[origin, default: 1] -= 1
        exchange.promise.fail(exchange.cancelled ? UpstreamFailure.cancelled : .connectFailed(detail))
        // The calls waiting for this origin would most likely fail the same way; each tries its
        // own connection rather than wait for a slot that may never come free.
        if var queue = waiting[origin], !queue.isEmpty, open[origin, default: 0] < maxConnectionsPerOrigin {
            let next = queue.removeFirst()
            waiting[origin] = queue
            connect(origin, for: next)
        }
    }

    private func released(_ connection: UpstreamConnection) {
        let origin = connection.origin
        while var queue = waiting[origin], !queue.isEmpty {
            let next = queue.removeFirst()
            waiting[origin] = queue
            if !next.cancelled { return connection.start(next) }
            next.promise.fail(UpstreamFailure.cancelled)
        }
        idle[origin, default: []].append(connection)
    }

    private func closed(_ connection: UpstreamConnection) {
        let origin = connection.origin
        open[origin, default: 1] -= 1
        idle[origin]?.removeAll { $0 === connection }
        if var queue = waiting[origin], !queue.isEmpty, open[origin, default: 0] < maxConnectionsPerOrigin {
            let next = queue.removeFirst()
            waiting[origin] = queue
            connect(origin, for: next)
        }
    }

    static func describe(_ error: any Error) -> String {
        if let error = error as? ChannelError, case .connectTimeout = error { return "connect timeout" }
        if let error = error as? NIOConnectionError {
            return error.connectionErrors.first.map { "\($0.error)" } ?? "\(error)"
        }
        return "\(error)"
    }
}
