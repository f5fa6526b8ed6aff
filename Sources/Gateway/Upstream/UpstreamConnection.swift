import NIOCore
import NIOHTTP1
import NIOSSL

/// One call on the upstream pool: the request to send and the promise of its response head.
/// Created anywhere; its state is only touched on the event loop of the pool that runs it.
final class UpstreamExchange: @unchecked Sendable {
    let origin: UpstreamOrigin
    let head: HTTPRequestHead
    let body: ByteBuffer
    /// The whole call's bound, from sending to the body's end (`network.timeout`).
    let timeout: TimeAmount
    let connectTimeout: TimeAmount
    /// For `https` origins.
    let tls: NIOSSLContext?
    /// The response is handed over once its body is complete, refused past this many bytes.
    let wholeBodyLimit: Int?
    let promise: EventLoopPromise<UpstreamResponse>
    var cancelled = false
    /// The connection carrying it, once it has one.
    var connection: UpstreamConnection?

    init(
        origin: UpstreamOrigin, head: HTTPRequestHead, body: ByteBuffer, timeout: TimeAmount,
        connectTimeout: TimeAmount, tls: NIOSSLContext?, wholeBodyLimit: Int?,
        promise: EventLoopPromise<UpstreamResponse>
    ) {
        self.origin = origin
        self.head = head
        self.body = body
        self.timeout = timeout
        self.connectTimeout = connectTimeout
        self.tls = tls
        self.wholeBodyLimit = wholeBodyLimit
        self.promise = promise
    }
}

/// One keep-alive HTTP/1.1 connection to a provider origin, carrying one exchange at a time.
///
/// The request goes out in one flush (head, body and end). The channel reads only on demand
/// (`autoRead` is off): until the response head, then while the body's consumer asks for more,
/// so a slow client slows the upstream read instead of buffering without bound. A call that
/// wants its answer whole gets it once the body ends, within its byte limit, without a body
/// stream in between. A consumer that stops, a timeout, or a cancelled call closes the
/// connection; a response read to its end returns it to the pool.
final class UpstreamConnection: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart
    typealias Source = UpstreamBody.Producer.Source

    private enum State {
        case idle
        case awaitingHead(UpstreamExchange)
        case collecting(UpstreamExchange, status: Int, headers: HTTPHeaders, body: ByteBuffer?)
        case streaming(UpstreamExchange, Source)
        case closed
    }

    let origin: UpstreamOrigin
    /// Told when the connection is free again or closed; on the same event loop.
    var onReleased: ((UpstreamConnection) -> Void)?
    var onClosed: ((UpstreamConnection) -> Void)?
    let idleTimeout: TimeAmount
    private var state = State.idle
    private var context: ChannelHandlerContext?
    private var demand = true
    private var keepAlive = true
    /// When the current call times out, or the idle connection closes.
    private var deadline: NIODeadline?
    /// The one scheduled wake-up, never after `deadline`: a call that starts inside a pending
    /// wake-up's horizon schedules nothing.
    private var wakeUp: (task: Scheduled<Void>, at: NIODeadline)?

    init(origin: UpstreamOrigin, idleTimeout: TimeAmount) {
        self.origin = origin
        self.idleTimeout = idleTimeout
    }

    var isIdle: Bool {
        if case .idle = state { return context != nil }
        return false
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    /// Sends `exchange` on this connection; it must be idle.
    func start(_ exchange: UpstreamExchange) {
        guard let context, case .idle = state else {
            exchange.promise.fail(UpstreamFailure.connectFailed("the pooled connection closed"))
            return
        }
        guard !exchange.cancelled else {
            exchange.promise.fail(UpstreamFailure.cancelled)
            onReleased?(self)
            return
        }
        state = .awaitingHead(exchange)
        exchange.connection = self
        demand = true
        keepAlive = true
        context.write(wrapOutboundOut(.head(exchange.head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(exchange.body))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        arm(exchange.timeout, context: context)
        context.read()
    }

    /// The call's task was cancelled: the connection goes with it.
    func cancel(_ exchange: UpstreamExchange) {
        switch state {
        case .awaitingHead(let current) where current === exchange,
            .collecting(let current, _, _, _) where current === exchange,
            .streaming(let current, _) where current === exchange:
            context?.close(promise: nil)
        default:
            break
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            guard case .awaitingHead(let exchange) = state else { return }
            keepAlive = head.isKeepAlive
            if exchange.wholeBodyLimit != nil {
                state = .collecting(exchange, status: Int(head.status.code), headers: head.headers, body: nil)
                return
            }
            let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
            let loop = context.eventLoop
            let demand = UpstreamBodyDemand(
                onDemand: { loop.execute { loopBound.value.consumerWantsMore(exchange) } },
                onTermination: { loop.execute { loopBound.value.consumerGone(exchange) } })
            let made = UpstreamBody.Producer.makeSequence(
                backPressureStrategy: .init(lowWatermark: 2, highWatermark: 8), finishOnDeinit: true,
                delegate: demand)
            state = .streaming(exchange, made.source)
            exchange.promise.succeed(
                UpstreamResponse(
                    status: Int(head.status.code), headers: head.headers, body: UpstreamBody(producer: made.sequence)))
        case .body(var buffer):
            switch state {
            case .streaming(_, let source):
                if case .stopProducing = source.yield(buffer) { demand = false }
            case .collecting(let exchange, let status, let headers, var body):
                // Out of `state` while it grows, so the buffer is not copied.
                state = .awaitingHead(exchange)
                let limit = exchange.wholeBodyLimit ?? .max
                guard (body?.readableBytes ?? 0) + buffer.readableBytes <= limit else {
                    state = .closed
                    exchange.promise.fail(UpstreamFailure.other("the response is larger than \(limit) bytes"))
                    context.close(promise: nil)
                    return
                }
                if body == nil {
                    body = buffer
                } else {
                    body!.writeBuffer(&buffer)
                }
                state = .collecting(exchange, status: status, headers: headers, body: body)
            default:
                return
            }
        case .end:
            switch state {
            case .streaming(_, let source):
                source.finish()
            case .collecting(let exchange, let status, let headers, let body):
                exchange.promise.succeed(
                    UpstreamResponse(status: status, headers: headers, body: UpstreamBody(body ?? ByteBuffer())))
            default:
                return
            }
            state = .idle
            if keepAlive {
                arm(idleTimeout, context: context)
                onReleased?(self)
            } else {
                state = .closed
                context.close(promise: nil)
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        switch state {
        // An idle connection keeps reading too: a provider closing it is seen at once, and the
        // read interest is not dropped and taken again for every call.
        case .awaitingHead, .collecting, .idle: context.read()
        case .streaming where demand: context.read()
        case .streaming, .closed: break
        }
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        wakeUp?.task.cancel()
        wakeUp = nil
        switch state {
        case .awaitingHead(let exchange):
            exchange.promise.fail(
                exchange.cancelled ? UpstreamFailure.cancelled : .connectFailed("the provider closed the connection"))
        case .collecting(let exchange, _, _, _):
            exchange.promise.fail(
                exchange.cancelled ? UpstreamFailure.cancelled : .other("the provider closed the connection mid-body"))
        case .streaming(let exchange, let source):
            source.finish(
                exchange.cancelled ? UpstreamFailure.cancelled : .other("the provider closed the connection mid-body"))
        case .idle, .closed:
            break
        }
        state = .closed
        self.context = nil
        onClosed?(self)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private func consumerWantsMore(_ exchange: UpstreamExchange) {
        guard case .streaming(let current, _) = state, current === exchange else { return }
        if !demand {
            demand = true
            context?.read()
        }
    }

    /// The body's consumer stopped before the end (the client went away): close, so the
    /// provider stops generating.
    private func consumerGone(_ exchange: UpstreamExchange) {
        guard case .streaming(let current, _) = state, current === exchange else { return }
        exchange.cancelled = true
        context?.close(promise: nil)
    }

    private func arm(_ delay: TimeAmount, context: ChannelHandlerContext) {
        let deadline = NIODeadline.now() + delay
        self.deadline = deadline
        if let wakeUp {
            if wakeUp.at <= deadline { return }
            wakeUp.task.cancel()
        }
        scheduleWakeUp(at: deadline, context: context)
    }

    private func scheduleWakeUp(at time: NIODeadline, context: ChannelHandlerContext) {
        let task = context.eventLoop.assumeIsolated().scheduleTask(deadline: time) { [self] in
            wakeUp = nil
            guard let deadline else { return }
            guard NIODeadline.now() >= deadline else {
                if let context = self.context { scheduleWakeUp(at: deadline, context: context) }
                return
            }
            switch state {
            case .awaitingHead(let exchange), .collecting(let exchange, _, _, _):
                state = .closed
                exchange.promise.fail(UpstreamFailure.timeout)
            case .streaming(_, let source):
                state = .closed
                source.finish(UpstreamFailure.timeout)
            case .idle, .closed:
                break
            }
            self.context?.close(promise: nil)
        }
        wakeUp = (task, time)
    }
}
