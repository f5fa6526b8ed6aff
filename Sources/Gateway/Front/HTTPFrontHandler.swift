import NIOCore
import NIOHTTP1

/// Tells the front handler when a request's first byte arrives on an idle connection, so the
/// header timeout runs from then and the idle timeout until then. It sits before the HTTP
/// decoder, which shows nothing until a whole head is parsed.
final class FirstByteObserver: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// The first bytes that arrive while armed start a request head.
    var armed = false
    var onFirstByte: (() -> Void)?
    private var context: ChannelHandlerContext?

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    /// Writes bytes to the socket past the HTTP handlers (a refusal the HTTP state machines of
    /// NIO's pipeline have no request for), then closes the connection.
    func writeAndClose(_ bytes: [UInt8]) {
        guard let context else { return }
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: bytes))).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if armed {
            armed = false
            onFirstByte?()
        }
        context.fireChannelRead(data)
    }
}

/// The channel handler of one client connection: aggregates each request within the limits,
/// keeps the timers, dispatches the whole request to the responder and watches its response go
/// out. The decisions are `HTTPConnectionMachine`'s; this class performs them.
///
/// It also serialises pipelined requests (NIO's pipelining handler is not in the pipeline): a
/// request that arrives while a response is in progress waits in `pending`, and reading stops
/// only then. Otherwise the connection keeps reading while it responds, so a client that goes
/// away is seen at once (its request is cancelled) and the socket's read interest is not
/// dropped and taken again for every request.
final class HTTPFrontHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let settings: HTTPFrontSettings
    private let maxBodyBytes: @Sendable () -> Int
    private let responder: any FrontResponder
    private let metrics: GatewayMetrics
    private let observer: FirstByteObserver
    private var machine = HTTPConnectionMachine()
    private var head: HTTPRequestHead?
    private var body: ByteBuffer?
    /// The armed timeout and when it expires.
    private var armed: (kind: HTTPConnectionMachine.Timer, deadline: NIODeadline)?
    /// The one scheduled wake-up of this connection, at most the shortest timeout ahead: arming
    /// a timeout only records its deadline, so a keep-alive connection schedules one task per
    /// that interval instead of three per request.
    private var wakeUp: Scheduled<Void>?
    /// Stops the request in progress until its response is ready.
    private var cancellation: FrontCancellation?
    /// Writes a response whose body is produced (a stream, or a route's body).
    private var task: Task<Void, Never>?
    /// Counts dispatched requests, so a response tells whether it is the current request's.
    private var dispatched: UInt64 = 0
    /// The current request's response is not ready yet.
    private var awaitingResponse = false
    private var closeAfterResponse = false
    /// What arrived while a response was in progress, in order.
    private var pending = CircularBuffer<Pending>()
    /// A read was asked for while `pending` held something; it is issued once `pending` drains.
    private var readWithheld = false
    /// The server is draining: the response in progress closes the connection.
    private var quiescing = false

    private enum Pending {
        case part(HTTPServerRequestPart)
        case parseError(headerOverflow: Bool)
    }

    init(
        settings: HTTPFrontSettings, maxBodyBytes: @escaping @Sendable () -> Int, responder: any FrontResponder,
        metrics: GatewayMetrics, observer: FirstByteObserver
    ) {
        self.settings = settings
        self.maxBodyBytes = maxBodyBytes
        self.responder = responder
        self.metrics = metrics
        self.observer = observer
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        observer.onFirstByte = {
            let (handler, context) = loopBound.value
            handler.perform(handler.machine.bytesArrived(), context: context)
        }
        if context.channel.isActive { perform(machine.activated(), context: context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        observer.onFirstByte = nil
        wakeUp?.cancel()
        wakeUp = nil
        armed = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        perform(machine.activated(), context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        perform(machine.inactive(), context: context)
        context.fireChannelInactive()
    }

    /// A response is in progress, or requests wait behind one.
    private var isBusy: Bool {
        if case .responding = machine.state { return true }
        return !pending.isEmpty
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        if isBusy {
            pending.append(.part(part))
        } else {
            receive(part, context: context)
        }
    }

    func read(context: ChannelHandlerContext) {
        if pending.isEmpty {
            context.read()
        } else {
            readWithheld = true
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is ChannelShouldQuiesceEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        quiescing = true
        pending.removeAll()
        if machine.state == .idle { context.close(promise: nil) }
    }

    private func receive(_ part: HTTPServerRequestPart, context: ChannelHandlerContext) {
        switch part {
        case .head(let head):
            var headerBytes = head.uri.utf8.count + 16
            for (name, value) in head.headers { headerBytes += name.utf8.count + value.utf8.count + 4 }
            let expects = head.headers[canonicalForm: "expect"].contains { $0.lowercased() == "100-continue" }
            self.head = head
            body = nil
            perform(
                machine.head(
                    contentLength: head.headers.first(name: "content-length").flatMap { Int($0) },
                    expectsContinue: expects, keepAlive: head.isKeepAlive, headerBytes: headerBytes,
                    maxHeaderBytes: settings.maxHeaderBytes, maxBodyBytes: maxBodyBytes()), context: context)
        case .body(var chunk):
            let actions = machine.body(bytes: chunk.readableBytes)
            if case .body = machine.state {
                if body == nil {
                    body = chunk
                } else {
                    body!.writeBuffer(&chunk)
                }
            }
            perform(actions, context: context)
        case .end:
            perform(machine.end(), context: context)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let parse = error as? HTTPParserError {
            if isBusy {
                pending.append(.parseError(headerOverflow: parse == .headerOverflow))
            } else {
                perform(machine.parseError(headerOverflow: parse == .headerOverflow), context: context)
            }
        } else {
            context.close(promise: nil)
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(var head) where head.status.code >= 200:
            if quiescing {
                head.headers.replaceOrAdd(name: "connection", value: "close")
                closeAfterResponse = true
                context.write(wrapOutboundOut(.head(head)), promise: promise)
            } else {
                closeAfterResponse = head.headers[canonicalForm: "connection"].contains { $0.lowercased() == "close" }
                context.write(data, promise: promise)
            }
        case .end:
            let actions = machine.responseEnded(keepAlive: !closeAfterResponse && !quiescing)
            task = nil
            if actions.contains(.close) {
                pending.removeAll()
                let written = promise ?? context.eventLoop.makePromise()
                context.write(data, promise: written)
                written.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
            } else {
                context.write(data, promise: promise)
                perform(actions, context: context)
                receivePending(context: context)
            }
        default:
            context.write(data, promise: promise)
        }
    }

    /// Takes the requests that waited behind the response that just ended, until one is in
    /// progress again; then reads on if a read was held back.
    private func receivePending(context: ChannelHandlerContext) {
        while !pending.isEmpty {
            if case .responding = machine.state { return }
            if machine.state == .closed { break }
            switch pending.removeFirst() {
            case .part(let part): receive(part, context: context)
            case .parseError(let overflow): perform(machine.parseError(headerOverflow: overflow), context: context)
            }
        }
        if pending.isEmpty && readWithheld {
            readWithheld = false
            context.read()
        }
    }

    private func perform(_ actions: [HTTPConnectionMachine.Action], context: ChannelHandlerContext) {
        for action in actions {
            switch action {
            case .arm(let kind):
                arm(kind, context: context)
            case .disarm:
                armed = nil
            case .sendContinue:
                let head = HTTPResponseHead(version: head?.version ?? .http1_1, status: .continue)
                context.writeAndFlush(wrapOutboundOut(.head(head)), promise: nil)
            case .dispatch(let keepAlive):
                dispatch(keepAlive: keepAlive, context: context)
            case .refuse(let refusal):
                refuse(refusal, context: context)
            case .close:
                context.close(promise: nil)
            case .cancelRequest:
                let cancellation = self.cancellation
                self.cancellation = nil
                awaitingResponse = false
                cancellation?.cancel()
                task?.cancel()
                task = nil
            }
        }
    }

    private func arm(_ kind: HTTPConnectionMachine.Timer, context: ChannelHandlerContext) {
        let delay: Duration
        switch kind {
        case .idle: delay = settings.idleTimeout
        case .header: delay = settings.headerTimeout
        case .body: delay = settings.bodyTimeout
        }
        observer.armed = kind == .idle
        armed = (kind, .now() + TimeAmount(delay))
        // A pending wake-up comes at most the shortest timeout after it was scheduled, so never
        // after this deadline.
        if wakeUp == nil { scheduleWakeUp(at: .now() + TimeAmount(settings.shortestTimeout), context: context) }
    }

    private func scheduleWakeUp(at time: NIODeadline, context: ChannelHandlerContext) {
        wakeUp = context.eventLoop.assumeIsolated().scheduleTask(deadline: time) { [self] in
            wakeUp = nil
            guard let (kind, deadline) = armed else { return }
            let now = NIODeadline.now()
            guard now >= deadline else {
                scheduleWakeUp(at: min(deadline, now + TimeAmount(settings.shortestTimeout)), context: context)
                return
            }
            armed = nil
            if kind == .idle && machine.state == .idle { metrics.httpRejected(reason: "idle_timeout") }
            perform(machine.timerFired(kind), context: context)
        }
    }

    private func dispatch(keepAlive: Bool, context: ChannelHandlerContext) {
        guard let head else { return }
        let request = FrontRequest(head: head, body: body ?? ByteBuffer(), keepAlive: keepAlive)
        self.head = nil
        body = nil
        let writer = FrontResponseWriter(channel: context.channel, version: head.version, keepAlive: keepAlive)
        dispatched &+= 1
        let number = dispatched
        awaitingResponse = true
        let cancellation = responder.start(request, channel: context.channel) { [self] response in
            if number == dispatched {
                awaitingResponse = false
                self.cancellation = nil
            }
            switch response.body {
            case .whole(let body):
                writer.writeWhole(response, body: body)
            case .produced:
                task = Task { await writer.write(response) }
            }
        }
        // A response that was ready at once (and maybe the next pipelined request) came first.
        if number == dispatched && awaitingResponse { self.cancellation = cancellation }
    }

    /// Answers with the refusal's error (in the API's shape the path names) and closes.
    private func refuse(_ refusal: HTTPConnectionMachine.Refusal, context: ChannelHandlerContext) {
        let error: GatewayError
        let reason: String
        switch refusal {
        case .bodyTooLarge:
            (error, reason) = (.bodyTooLarge(limit: maxBodyBytes()), "body_too_large")
        case .headerTimeout:
            (error, reason) = (.requestTimeout(part: "head", after: settings.headerTimeout), "header_timeout")
        case .bodyTimeout:
            (error, reason) = (.requestTimeout(part: "body", after: settings.bodyTimeout), "body_timeout")
        case .headersTooLarge:
            (error, reason) = (.headersTooLarge(limit: settings.maxHeaderBytes), "headers_too_large")
        case .malformed:
            (error, reason) = (.malformedHTTP(), "malformed")
        }
        metrics.httpRejected(reason: reason)
        let api: WireAPI = head?.uri.hasPrefix(ClientEndpoint.messages.path) == true ? .anthropic : .openAI
        // Past NIO's HTTP handlers, which refuse a response to a request they have not seen whole.
        observer.writeAndClose(error.closingHTTPResponse(api: api))
    }
}
