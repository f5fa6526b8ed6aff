import EventLog
import Hummingbird
import NIOCore

/// Whether a node takes traffic: what `/health` tells load balancers.
public enum ServingState: String, Sendable {
    case starting, serving, draining
}

/// What the cluster endpoints report; the node implements it from membership, sync and the log.
public protocol ClusterStatusSource: Sendable {
    var nodeName: String { get }
    func servingState() -> ServingState
    /// False while the node's event log refuses writes (it then refuses new requests).
    func logIsWritable() -> Bool
    /// `{"nodes": [...]}` as documented for `GET /cluster/nodes`.
    func nodes() async -> JSONValue
    /// The seed's `cluster_metrics` shape for `GET /cluster/metrics`.
    func clusterMetrics() async -> JSONValue
    /// Prometheus text exposition for `GET /metrics`.
    func prometheusText() async -> [UInt8]
    /// `GET /cluster/log`: this node's log at a glance (count, root digest, per-origin watermarks),
    /// cheap enough to poll; two nodes hold the same events when count and root agree.
    func logSummary() async -> JSONValue
    /// `GET /cluster/events`: the newest `limit` events of this node's log, newest first, each
    /// rendered as `bifrost-dump` renders it (secrets redacted) plus a one-line `summary`.
    func recentEvents(limit: Int) async -> JSONValue
    /// `GET /cluster/alerts`: `{"active": [...], "latest": [...]}` from the alerts view.
    func alerts() async -> JSONValue
}

/// `GET /health`, `/cluster/nodes`, `/cluster/metrics`, `/cluster/log`, `/cluster/events`, `/metrics`.
public enum ClusterRoutes {
    /// `GET /cluster/events` returns this many events unless `?limit=` says otherwise.
    public static let eventsLimitDefault = 50
    /// Larger `?limit=` values are clamped to this: the endpoint is polled by the dashboard.
    public static let eventsLimitMax = 500

    public static func register<Context: RequestContext>(on router: Router<Context>, status: some ClusterStatusSource) {
        router.get("health") { _, _ -> Response in
            let state = status.servingState()
            return json(
                .object([
                    "status": .string(state.rawValue), "node_id": .string(status.nodeName),
                    "log": .string(status.logIsWritable() ? "writable" : "full"),
                ]),
                status: state == .serving ? .ok : .serviceUnavailable)
        }
        router.get("cluster/nodes") { _, _ -> Response in json(await status.nodes()) }
        router.get("cluster/metrics") { _, _ -> Response in json(await status.clusterMetrics()) }
        router.get("cluster/log") { _, _ -> Response in json(await status.logSummary()) }
        router.get("cluster/alerts") { _, _ -> Response in json(await status.alerts()) }
        router.get("cluster/events") { request, _ -> Response in
            var limit = eventsLimitDefault
            if let text = request.uri.queryParameters.get("limit") {
                guard let n = Int(text), n >= 1 else {
                    return GatewayError.badRequest(
                        "limit must be a whole number of at least 1 (at most \(eventsLimitMax) events are returned), got '\(text)'",
                        param: "limit"
                    ).response(api: .openAI)
                }
                limit = min(n, eventsLimitMax)
            }
            return json(await status.recentEvents(limit: limit))
        }
        router.get("metrics") { _, _ -> Response in
            let text = await status.prometheusText()
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: text)))
        }
    }

    /// A JSON response with deterministic key order.
    public static func json(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
        Response(
            status: status, headers: [.contentType: "application/json"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: value.rendered())))
    }
}
