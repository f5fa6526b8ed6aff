import Crypto
import EventLog
import Foundation
import Hummingbird
import NIOCore

/// The admin API (`Authorization: Bearer <admin.token>`, compared in constant time):
///
/// - `GET /admin/config`: the configuration in force, secrets redacted, and the event it came from.
/// - `PUT /admin/config`: a whole configuration document, or `{"document","signer_key","signature"}`
///   from `bifrost-config sign`. It is validated, signed with this node's `admin.signing_key`
///   when unsigned, checked against `admin.trusted_keys`, and written as one `config.updated`
///   event that every node applies. `?wait=replicated` returns once every live peer has it.
/// - `PUT /admin/keys/{key_id}/weight` with `{"weight": w, "reason": "…"}`: a `weight.changed`.
public enum AdminRoutes {
    static let replicationWait: Duration = .seconds(10)

    public static func register<Context: RequestContext>(on router: Router<Context>, engine: GatewayEngine) {
        let token = engine.baseConfig.admin.token?.resolve()
        router.get("admin/config") { request, _ -> Response in
            if let denied = authorize(request, token: token) { return denied }
            let runtime = engine.runtime
            let document: JSONValue
            if let event = runtime.sourceEvent, let update = engine.store.viewSnapshot.config, update.event == event {
                document = Redaction.redactDocument(update.value.document)
            } else {
                document = engine.fileDocument.map(Redaction.redactDocument) ?? .object([:])
            }
            return ClusterRoutes.json(
                .object([
                    "source": .string(runtime.sourceEvent == nil ? "file" : "event"),
                    "event_id": runtime.sourceEvent.map { .string("\($0)") } ?? .null,
                    "config": document,
                ]))
        }
        router.put("admin/config") { request, context -> Response in
            if let denied = authorize(request, token: token) { return denied }
            let body: ByteBuffer
            do {
                body = try await request.body.collect(upTo: 4 << 20)
            } catch {
                return GatewayError.bodyTooLarge(limit: 4 << 20).response(api: .openAI)
            }
            let update: ConfigUpdated
            do {
                update = try engine.prepareConfigUpdate(Array(buffer: body))
            } catch {
                engine.metrics.configRejected()
                return error.response(api: .openAI)
            }
            let id: EventID
            do {
                id = try await engine.store.append(.configUpdated(update))
            } catch {
                return writeFailed(error, what: "the configuration event").response(api: .openAI)
            }
            return await written(id, kind: "config.updated", request: request, engine: engine)
        }
        router.put("admin/keys/:key_id/weight") { request, context -> Response in
            if let denied = authorize(request, token: token) { return denied }
            let keyID = context.parameters.get("key_id") ?? ""
            let body = try await request.body.collect(upTo: 64 << 10)
            let change: WeightChanged
            do {
                change = try engine.prepareWeightChange(keyID: keyID, body: Array(buffer: body))
            } catch {
                return error.response(api: .openAI)
            }
            let id: EventID
            do {
                id = try await engine.store.append(.weightChanged(change))
            } catch {
                return writeFailed(error, what: "the weight change").response(api: .openAI)
            }
            engine.metrics.weightChanged(actor: "operator")
            return await written(id, kind: "weight.changed", request: request, engine: engine)
        }
    }

    /// The answer when the log refused an operator's event: 503 while it is full, else 500.
    static func writeFailed(_ error: any Error, what: String) -> GatewayError {
        if let error = error as? EventLogError, error.code == .logFull {
            return GatewayError(
                status: 503, type: "api_error",
                message:
                    "The event log is full, so \(what) was not recorded: \(error.message). Retry once it has room.",
                code: "log_full", headers: [("retry-after", "5")])
        }
        return .internalError("cannot write \(what): \(error)")
    }

    static func written(_ id: EventID, kind: String, request: Request, engine: GatewayEngine) async -> Response {
        var fields: [String: JSONValue] = ["event_id": .string("\(id)"), "kind": .string(kind)]
        if request.uri.queryParameters.get("wait") == "replicated" {
            let replicated = await engine.waitUntilReplicated(id, timeout: replicationWait)
            fields["replicated"] = .bool(replicated)
            if !replicated {
                fields["error"] = .object([
                    "message": .string(
                        "written here, but not every live peer acknowledged it within \(replicationWait); it will still replicate"
                    ),
                    "type": .string("replication_timeout"),
                ])
                return ClusterRoutes.json(.object(fields), status: .gatewayTimeout)
            }
        }
        return ClusterRoutes.json(.object(fields))
    }

    /// nil when the request carries the admin token; otherwise the 401/403 response.
    static func authorize(_ request: Request, token: String?) -> Response? {
        guard let token, !token.isEmpty else {
            return GatewayError(
                status: 403, type: "permission_error",
                message: "the admin API is disabled on this node: set admin.token (e.g. \"env.BIFROST_ADMIN_TOKEN\")"
            ).response(api: .openAI)
        }
        let presented = ClientToken.extract(authorization: request.headers[.authorization], apiKey: nil)
        guard let presented, constantTimeEquals(Array(presented.utf8), Array(token.utf8)) else {
            return GatewayError(
                status: 401, type: "authentication_error",
                message: "missing or wrong admin token: send Authorization: Bearer <admin.token>"
            ).response(api: .openAI)
        }
        return nil
    }
}
