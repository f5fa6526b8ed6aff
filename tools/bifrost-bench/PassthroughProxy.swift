import ArgumentParser
import NIOCore
import NIOHTTP1
import NIOPosix

/// The floor a node is measured against: a bare SwiftNIO HTTP/1.1 proxy with no Swift
/// concurrency. NIOHTTP1 server; the request body in one buffer; a bearer-token check and a byte
/// scan for `"model"`; a keep-alive upstream connection from a pool on the client connection's
/// own event loop; the response relayed whole. Nothing else: no routing, limits, events or
/// metrics. The gateway bench runs it beside the node, so the report shows what the gateway's
/// own work costs over the cheapest Swift proxy of the same requests.
struct PassthroughProxy: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "passthrough",
        abstract: "A bare SwiftNIO pass-through proxy (the gateway bench's floor).",
        shouldDisplay: false)

    @Option(help: "Upstream host:port, e.g. 127.0.0.1:18080.")
    var upstream: String

    @Option(help: "Port to listen on (127.0.0.1).")
    var port: Int

    func run() async throws {
        let parts = upstream.split(separator: ":")
        guard parts.count == 2, let upstreamPort = Int(parts[1]) else {
            throw ValidationError("--upstream must be host:port")
        }
        let host = String(parts[0])
        let group = MultiThreadedEventLoopGroup.singleton
        var pools: [ObjectIdentifier: NIOLoopBoundBox<PassthroughPool>] = [:]
        for loop in group.makeIterator() {
            pools[ObjectIdentifier(loop)] = NIOLoopBoundBox.makeBoxSendingValue(
                PassthroughPool(loop: loop, host: host, port: upstreamPort), eventLoop: loop)
        }
        let byLoop = pools
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    let pool = byLoop[ObjectIdentifier(channel.eventLoop)]!.value
                    try channel.pipeline.syncOperations.addHandler(PassthroughServerHandler(pool: pool))
                }
            }
            .bind(host: "127.0.0.1", port: port).get()
        // Startup only: requests run on channel handlers and futures, never in a task.
        try await server.closeFuture.get()
    }
}

/// The client side of one proxied request.
final class PassthroughServerHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    static let modelKey = Array(#""model""#.utf8)
    let pool: PassthroughPool
    private var head: HTTPRequestHead?
    private var body = ByteBuffer()

    init(pool: PassthroughPool) { self.pool = pool }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body.clear()
        case .body(var chunk):
            body.writeBuffer(&chunk)
        case .end:
            guard let head else { return }
            self.head = nil
            if head.uri == "/health" { return respond(context, head, .ok, ByteBuffer(string: "{}")) }
            guard head.headers.first(name: "authorization")?.hasPrefix("Bearer ") == true else {
                return respond(context, head, .unauthorized, ByteBuffer(string: #"{"error":"no key"}"#))
            }
            guard body.readableBytesView.firstRange(of: Self.modelKey) != nil else {
                return respond(context, head, .badRequest, ByteBuffer(string: #"{"error":"no model"}"#))
            }
            pool.send(uri: head.uri, body: body).assumeIsolated().whenComplete { [self] result in
                switch result {
                case .success(let (status, answer)): respond(context, head, status, answer)
                case .failure: respond(context, head, .badGateway, ByteBuffer(string: #"{"error":"upstream"}"#))
                }
            }
        }
    }

    private func respond(
        _ context: ChannelHandlerContext, _ head: HTTPRequestHead, _ status: HTTPResponseStatus, _ body: ByteBuffer
    ) {
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: "application/json")
        headers.add(name: "content-length", value: String(body.readableBytes))
        if !head.isKeepAlive { headers.add(name: "connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))))
            .whenFailure { _ in }
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !head.isKeepAlive { done.assumeIsolated().whenComplete { _ in context.close(promise: nil) } }
    }
}

/// Keep-alive connections to the upstream from one event loop; used only on that loop.
final class PassthroughPool {
    let loop: any EventLoop
    let host: String
    let port: Int
    private var idle: [PassthroughClientHandler] = []

    init(loop: any EventLoop, host: String, port: Int) {
        self.loop = loop
        self.host = host
        self.port = port
    }

    func send(uri: String, body: ByteBuffer) -> EventLoopFuture<(HTTPResponseStatus, ByteBuffer)> {
        let promise = loop.makePromise(of: (HTTPResponseStatus, ByteBuffer).self)
        var headers = HTTPHeaders()
        headers.add(name: "host", value: "\(host):\(port)")
        headers.add(name: "content-type", value: "application/json")
        headers.add(name: "authorization", value: "Bearer sk-passthrough")
        headers.add(name: "content-length", value: String(body.readableBytes))
        let head = HTTPRequestHead(version: .http1_1, method: .POST, uri: uri, headers: headers)
        while let connection = idle.popLast() {
            if connection.isOpen {
                connection.send(head, body, promise)
                return promise.futureResult
            }
        }
        ClientBootstrap(group: loop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(PassthroughClientHandler())
                }
            }
            .connect(host: host, port: port)
            .assumeIsolated()
            .whenComplete { [self] result in
                switch result {
                case .success(let channel):
                    let connection = try! channel.pipeline.syncOperations.handler(type: PassthroughClientHandler.self)
                    connection.onFree = { [unowned self] in idle.append($0) }
                    connection.send(head, body, promise)
                case .failure(let error):
                    promise.fail(error)
                }
            }
        return promise.futureResult
    }
}

/// One upstream connection: one request at a time, the response collected whole.
final class PassthroughClientHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    var onFree: ((PassthroughClientHandler) -> Void)?
    private var context: ChannelHandlerContext?
    private var pending: EventLoopPromise<(HTTPResponseStatus, ByteBuffer)>?
    private var status = HTTPResponseStatus.ok
    private var body = ByteBuffer()

    var isOpen: Bool { context?.channel.isActive ?? false }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func send(
        _ head: HTTPRequestHead, _ body: ByteBuffer, _ promise: EventLoopPromise<(HTTPResponseStatus, ByteBuffer)>
    ) {
        guard let context else { return promise.fail(ChannelError.ioOnClosedChannel) }
        pending = promise
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = head.status
            body.clear()
        case .body(var chunk):
            body.writeBuffer(&chunk)
        case .end:
            let promise = pending
            pending = nil
            onFree?(self)
            promise?.succeed((status, body))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        pending?.fail(ChannelError.eof)
        pending = nil
        self.context = nil
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
