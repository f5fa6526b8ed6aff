import EventLog
import NIOCore
import NIOHTTP1

extension GatewayEngine {
    static let migratedFromHeader = "x-bifrost-migrated-from"
    static let virtualKeyHeader = "x-bifrost-virtual-key"
    static let hopAuthHeader = "x-bifrost-hop-auth"

    /// Forwards a request this node cannot serve to a healthy peer (`migrate_to_healthy`), over
    /// the cluster-authenticated inter-node path. The peer serves it without migrating again.
    /// Returns nil when no peer could take it.
    func migrate(_ request: ClientRequest, caller: Caller, strategy: MigrationStrategy) async -> FrontResponse? {
        let path = request.endpoint.path
        let virtualKey = caller.virtualKey?.name ?? ""
        var lastRefusal: UpstreamResponse?
        for peer in cluster.migrationTargets().prefix(2) {
            var headers = HTTPHeaders()
            headers.add(name: "content-type", value: "application/json")
            headers.add(name: Self.migratedFromHeader, value: nodeName)
            headers.add(name: Self.virtualKeyHeader, value: virtualKey)
            headers.add(
                name: Self.hopAuthHeader,
                value: hop.sign(
                    from: nodeName, path: path, virtualKey: virtualKey, body: request.original,
                    nowMillis: wallClock.nowMillis()))
            let call = UpstreamCall(
                url: "http://\(peer.apiAddress)\(path)", headers: headers, body: request.original,
                timeout: .seconds(60))
            do {
                let response = try await upstream.send(call, provider: false)
                if response.status >= 500 {
                    _ = try? await response.body.collect(upTo: 1 << 20)
                    lastRefusal = response
                    continue
                }
                metrics.migration(strategy: strategy.rawValue, outcome: "migrated")
                logger.debug(
                    "request migrated", metadata: ["peer.id": .string(peer.name), "http.path": .string(path)])
                return Self.relay(response)
            } catch {
                if case .cancelled = error { return nil }
                cluster.reportUnreachable(peer.name)
                logger.warning(
                    "peer did not take a migrated request",
                    metadata: ["peer.id": .string(peer.name), "error": .string(error.description)])
            }
        }
        metrics.migration(strategy: strategy.rawValue, outcome: lastRefusal == nil ? "no_peer" : "peer_failed")
        return nil
    }

    /// A peer's response, streamed to the client as it arrives.
    static func relay(_ response: UpstreamResponse) -> FrontResponse {
        var headers = HTTPHeaders()
        for (name, value) in response.headers {
            let lower = name.lowercased()
            guard
                lower == "content-type" || lower.hasPrefix("x-ratelimit-") || lower == "retry-after"
                    || lower == "x-bifrost-node" || lower == "cache-control"
            else { continue }
            headers.add(name: lower, value: value)
        }
        let body = response.body
        return FrontResponse(
            status: response.status, headers: headers,
            body: .produced(length: nil) { writer in
                for try await part in body { try await writer.write(part) }
            })
    }
}
