import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1

/// Routes the HTTP port's requests: the client API's POST endpoints go straight to the gateway
/// (`GatewayRoutes.proxy`, no router, no request context); every other route (`/health`,
/// `/metrics`, `/cluster/*`, `/admin/*`, `/ui`, `GET /v1/models`) through a Hummingbird router,
/// used as a library on the same port.
public struct FrontRouter: FrontResponder {
    let engine: GatewayEngine
    let routes: RouterResponder<BasicRequestContext>
    let logger: Logger

    static let endpoints: [Substring: ClientEndpoint] = [
        "/v1/chat/completions": .chatCompletions, "/v1/embeddings": .embeddings, "/v1/messages": .messages,
    ]

    public init(router: Router<BasicRequestContext>, engine: GatewayEngine, logger: Logger) {
        self.engine = engine
        routes = router.buildResponder()
        self.logger = logger
    }

    public func start(
        _ request: FrontRequest, channel: any Channel, respond: @escaping (FrontResponse) -> Void
    ) -> FrontCancellation? {
        let loop = channel.eventLoop
        if request.head.method == .POST, let endpoint = Self.endpoints[request.path] {
            return GatewayRoutes.proxy(
                endpoint, headers: request.head.headers, body: request.body, engine: engine, loop: loop,
                respond: respond)
        }
        let respond = NIOLoopBound(respond, eventLoop: loop)
        let task = Task {
            let response = await route(request, channel: channel)
            loop.execute { respond.value(response) }
        }
        return FrontCancellation { task.cancel() }
    }

    /// Every route but the client API's POST endpoints, through the router.
    private func route(_ request: FrontRequest, channel: any Channel) async -> FrontResponse {
        let routed = Request(head: Self.httpRequest(request.head), body: RequestBody(buffer: request.body))
        let context = BasicRequestContext(source: ApplicationRequestContextSource(channel: channel, logger: logger))
        do {
            return Self.frontResponse(try await routes.respond(to: routed, context: context))
        } catch {
            logger.error(
                "request failed", metadata: ["http.path": .string(String(request.path)), "error": .string("\(error)")])
            return GatewayError.internalError("The request failed inside the gateway.").frontResponse(api: .openAI)
        }
    }

    /// A router's response in the front's shape; its body is written as the route produces it.
    static func frontResponse(_ response: Response) -> FrontResponse {
        var headers = HTTPHeaders()
        headers.reserveCapacity(response.headers.count)
        for field in response.headers { headers.add(name: field.name.rawName, value: field.value) }
        let body = response.body
        return FrontResponse(
            status: Int(response.status.code), headers: headers,
            body: .produced(length: body.contentLength) { writer in try await body.write(RouteBodyWriter(writer)) })
    }

    /// Hands a route's body to the front; the front writes the end once the body is produced.
    private struct RouteBodyWriter: ResponseBodyWriter {
        let writer: FrontBodyWriter

        init(_ writer: FrontBodyWriter) { self.writer = writer }

        mutating func write(_ buffer: ByteBuffer) async throws { try await writer.write(buffer) }

        consuming func finish(_ trailingHeaders: HTTPFields?) async throws {}
    }

    /// The head in swift-http-types' shape, for the router.
    static func httpRequest(_ head: HTTPRequestHead) -> HTTPRequest {
        var fields = HTTPFields()
        fields.reserveCapacity(head.headers.count)
        for (name, value) in head.headers {
            if let name = HTTPField.Name(name) { fields.append(HTTPField(name: name, value: value)) }
        }
        return HTTPRequest(
            method: HTTPRequest.Method(head.method.rawValue) ?? .get, scheme: nil,
            authority: head.headers.first(name: "host"), path: head.uri, headerFields: fields)
    }
}
