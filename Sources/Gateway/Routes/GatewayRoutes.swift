import EventLog
import HTTPTypes
import Hummingbird
import NIOCore
import NIOHTTP1

/// The client API: `POST /v1/chat/completions`, `POST /v1/embeddings`, `POST /v1/messages`
/// (Anthropic's shape) and `GET /v1/models`.
public enum GatewayRoutes {
    static let apiKeyHeader = HTTPField.Name("x-api-key")!

    /// `GET /v1/models`; the POST endpoints are `FrontRouter`'s, which calls `proxy` directly.
    public static func register<Context: RequestContext>(on router: Router<Context>, engine: GatewayEngine) {
        router.get("v1/models") { request, _ -> Response in
            do {
                let caller = try engine.authenticate(
                    authorization: request.headers[.authorization], apiKey: request.headers[apiKeyHeader])
                return ClusterRoutes.json(engine.models(for: caller))
            } catch {
                return error.response(api: .openAI)
            }
        }
    }

    /// Starts one client API request, its body read whole by the front (which refused larger
    /// ones with 413 before reading them), on the connection's event loop; `respond` gets the
    /// response there. Returns what stops the request when the client leaves, while it runs.
    static func proxy(
        _ endpoint: ClientEndpoint, headers: HTTPHeaders, body: ByteBuffer, engine: GatewayEngine,
        loop: any EventLoop, respond: @escaping (FrontResponse) -> Void
    ) -> FrontCancellation? {
        let started = ContinuousClock.now
        let api = endpoint.api
        let migratedFrom = headers.first(name: GatewayEngine.migratedFromHeader)
        var caller = Caller(virtualKey: nil)
        if migratedFrom == nil {
            do {
                caller = try engine.authenticate(
                    authorization: headers.first(name: "authorization"), apiKey: headers.first(name: "x-api-key"))
            } catch {
                engine.metrics.requestFinished(provider: "none", model: "none", key: "none", status: error.status)
                respond(error.frontResponse(api: api))
                return nil
            }
        }
        let bytes = Array(body.readableBytesView)
        if let migratedFrom {
            // A peer's migrated request: authenticated by the cluster key, for a virtual key
            // the origin already admitted.
            let virtualKey = headers.first(name: GatewayEngine.virtualKeyHeader) ?? ""
            guard
                engine.hop.verify(
                    headers.first(name: GatewayEngine.hopAuthHeader) ?? "", from: migratedFrom, path: endpoint.path,
                    virtualKey: virtualKey, body: bytes, nowMillis: SystemWallClock().nowMillis())
            else {
                respond(
                    GatewayError.unauthorized("the inter-node request is not authenticated by the cluster key")
                        .frontResponse(api: api))
                return nil
            }
            if !virtualKey.isEmpty {
                guard let entry = engine.runtime.virtualKeys.entry(named: virtualKey) else {
                    respond(
                        GatewayError.unauthorized("the virtual key of a migrated request is unknown here")
                            .frontResponse(api: api))
                    return nil
                }
                caller = Caller(virtualKey: entry)
            }
        }
        var parsed: ClientRequest
        do {
            parsed = try ClientRequest.parse(endpoint, bytes)
        } catch {
            engine.metrics.requestFinished(provider: "none", model: "none", key: "none", status: error.status)
            respond(error.frontResponse(api: api))
            return nil
        }
        parsed.migratedFrom = migratedFrom
        let driver = RequestDriver(
            engine: engine, request: parsed, caller: caller, started: started, loop: loop, respond: respond)
        driver.start()
        return FrontCancellation(driver.cancel)
    }
}
