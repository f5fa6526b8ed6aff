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
    /// `{"nodes": [...]}` as documented for `GET /cluster/nodes`.
    func nodes() async -> JSONValue
    /// The seed's `cluster_metrics` shape for `GET /cluster/metrics`.
    func clusterMetrics() async -> JSONValue
    /// Prometheus text exposition for `GET /metrics`.
    func prometheusText() async -> [UInt8]
    /// `GET /cluster/log`: this node's log at a glance (count, root digest, per-origin watermarks),
    /// cheap enough to poll; two nodes hold the same events when count and root agree.
    func logSummary() async -> JSONValue
}

/// `GET /health`, `/cluster/nodes`, `/cluster/metrics`, `/metrics`.
public enum ClusterRoutes {
    public static func register<Context: RequestContext>(on router: Router<Context>, status: some ClusterStatusSource) {
        router.get("health") { _, _ -> Response in
            let state = status.servingState()
            return json(
                .object(["status": .string(state.rawValue), "node_id": .string(status.nodeName)]),
                status: state == .serving ? .ok : .serviceUnavailable)
        }
        router.get("cluster/nodes") { _, _ -> Response in json(await status.nodes()) }
        router.get("cluster/metrics") { _, _ -> Response in json(await status.clusterMetrics()) }
        router.get("cluster/log") { _, _ -> Response in json(await status.logSummary()) }
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
