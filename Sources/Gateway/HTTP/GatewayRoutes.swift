import EventLog
import HTTPTypes
import Hummingbird
import NIOCore

/// The client API: `POST /v1/chat/completions`, `POST /v1/embeddings`, `POST /v1/messages`
/// (Anthropic's shape) and `GET /v1/models`.
public enum GatewayRoutes {
    static let apiKeyHeader = HTTPField.Name("x-api-key")!
    static let migratedFromHeader = HTTPField.Name(GatewayEngine.migratedFromHeader)!
    static let virtualKeyHeader = HTTPField.Name(GatewayEngine.virtualKeyHeader)!
    static let hopAuthHeader = HTTPField.Name(GatewayEngine.hopAuthHeader)!

    public static func register<Context: RequestContext>(on router: Router<Context>, engine: GatewayEngine) {
        router.post("v1/chat/completions") { request, _ in
            await proxy(.chatCompletions, request, engine)
        }
        router.post("v1/embeddings") { request, _ in
            await proxy(.embeddings, request, engine)
        }
        router.post("v1/messages") { request, _ in
            await proxy(.messages, request, engine)
        }
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

    static func proxy(_ endpoint: ClientEndpoint, _ request: Request, _ engine: GatewayEngine) async -> Response {
        let started = ContinuousClock.now
        let api = endpoint.api
        let migratedFrom = request.headers[migratedFromHeader]
        var caller = Caller(virtualKey: nil)
        if migratedFrom == nil {
            do {
                caller = try engine.authenticate(
                    authorization: request.headers[.authorization], apiKey: request.headers[apiKeyHeader])
            } catch {
                engine.metrics.requestFinished(provider: "none", model: "none", key: "none", status: error.status)
                return error.response(api: api)
            }
        }
        let limit = engine.runtime.config.gateway.maxRequestBytes
        if let length = request.headers[.contentLength].flatMap(Int.init), length > limit {
            engine.metrics.requestFinished(provider: "none", model: "none", key: "none", status: 413)
            return GatewayError.bodyTooLarge(limit: limit).response(api: api)
        }
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: limit)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            engine.metrics.requestFinished(provider: "none", model: "none", key: "none", status: 413)
            return GatewayError.bodyTooLarge(limit: limit).response(api: api)
        } catch {
            return GatewayError.malformedJSON("the body could not be read (\(error))").response(api: api)
        }
        let bytes = Array(body.readableBytesView)
        if let migratedFrom {
            // A peer's migrated request: authenticated by the cluster key, for a virtual key
            // the origin already admitted.
            let virtualKey = request.headers[virtualKeyHeader] ?? ""
            guard
                engine.hop.verify(
                    request.headers[hopAuthHeader] ?? "", from: migratedFrom, path: endpoint.path,
                    virtualKey: virtualKey, body: bytes, nowMillis: SystemWallClock().nowMillis())
            else {
                return GatewayError.unauthorized("the inter-node request is not authenticated by the cluster key")
                    .response(api: api)
            }
            if !virtualKey.isEmpty {
                guard let entry = engine.runtime.virtualKeys.entry(named: virtualKey) else {
                    return GatewayError.unauthorized("the virtual key of a migrated request is unknown here")
                        .response(api: api)
                }
                caller = Caller(virtualKey: entry)
            }
        }
        var parsed: ClientRequest
        do {
            parsed = try ClientRequest.parse(endpoint, bytes)
        } catch {
            engine.metrics.requestFinished(provider: "none", model: "none", key: "none", status: error.status)
            return error.response(api: api)
        }
        parsed.migratedFrom = migratedFrom
        return await engine.handle(parsed, caller: caller, started: started)
    }
}
