import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import Synchronization

/// The node's HTTP port: a SwiftNIO HTTP/1.1 server whose connections are `HTTPFrontHandler`s,
/// under a connection cap, answering every route through one `FrontResponder`.
///
/// On graceful shutdown it stops accepting, asks every connection to finish the request it is in
/// and close (`ChannelShouldQuiesceEvent`, which `HTTPFrontHandler` honours), and returns
/// once all are closed; cancelled (the drain's bound), it closes them at once.
public final class HTTPFront: Service, Sendable {
    public let host: String
    public let port: Int
    let settings: HTTPFrontSettings
    let maxBodyBytes: @Sendable () -> Int
    let responder: any FrontResponder
    let metrics: GatewayMetrics
    let logger: Logger
    let group: any EventLoopGroup
    let onServing: @Sendable (SocketAddress?) -> Void
    private let open = Atomic<Int>(0)
    private let connections = Mutex<[ObjectIdentifier: any Channel]>([:])

    public init(
        host: String, port: Int, settings: HTTPFrontSettings, maxBodyBytes: @escaping @Sendable () -> Int,
        responder: any FrontResponder, metrics: GatewayMetrics, logger: Logger,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        onServing: @escaping @Sendable (SocketAddress?) -> Void = { _ in }
    ) {
        self.host = host
        self.port = port
        self.settings = settings
        self.maxBodyBytes = maxBodyBytes
        self.responder = responder
        self.metrics = metrics
        self.logger = logger
        self.group = group
        self.onServing = onServing
    }

    /// Client connections open now.
    public var openConnections: Int { open.load(ordering: .relaxed) }

    public func run() async throws {
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture { try self.initialize(channel) }
            }
            .bind(host: host, port: port).get()
        onServing(server.localAddress)
        try? await gracefulShutdown()
        try? await server.close()
        let open = connections.withLock { Array($0.values) }
        for channel in open { channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent()) }
        await withTaskCancellationHandler {
            for channel in open { try? await channel.closeFuture.get() }
        } onCancel: {
            for channel in open { channel.close(promise: nil) }
        }
    }

    private func initialize(_ channel: any Channel) throws {
        let id = ObjectIdentifier(channel)
        if open.add(1, ordering: .relaxed).newValue > settings.maxConnections {
            metrics.httpRejected(reason: "max_connections")
            channel.closeFuture.whenComplete { [self] _ in open.subtract(1, ordering: .relaxed) }
            try channel.pipeline.syncOperations.addHandler(ConnectionRefusal())
            return
        }
        connections.withLock { $0[id] = channel }
        channel.closeFuture.whenComplete { [self] _ in
            open.subtract(1, ordering: .relaxed)
            _ = connections.withLock { $0.removeValue(forKey: id) }
        }
        let observer = FirstByteObserver()
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderListSize = settings.maxHeaderBytes
        limits.maxHeaderFieldSize = settings.maxHeaderBytes
        let pipeline = channel.pipeline.syncOperations
        try pipeline.addHandler(observer)
        try pipeline.configureHTTPServerPipeline(
            withPipeliningAssistance: false, withErrorHandling: false, withEncoderConfiguration: .init(),
            withDecoderLimitConfiguration: limits)
        try pipeline.addHandler(
            HTTPFrontHandler(
                settings: settings, maxBodyBytes: maxBodyBytes, responder: responder, metrics: metrics,
                observer: observer))
    }
}

/// Answers a connection over the cap with 503 and closes it, before reading anything.
final class ConnectionRefusal: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    static let response = GatewayError(
        status: 503, type: "api_error",
        message: "This gateway node has too many open connections; retry shortly or use another node.",
        code: "too_many_connections", headers: [("retry-after", "1")]
    ).closingHTTPResponse(api: .openAI)

    func channelActive(context: ChannelHandlerContext) {
        refuse(context)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { refuse(context) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}

    private var refused = false

    private func refuse(_ context: ChannelHandlerContext) {
        guard !refused else { return }
        refused = true
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: Self.response))).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }
}
