import EventLog
import Logging
import NIOCore
import NIOHTTP1

extension UpstreamClient {
    /// POSTs alert transitions to the configured `alert_webhook` as one JSON document:
    /// `{"node": …, "alerts": [{"rule", "scope", "state": "fired"|"cleared", "value", "action", "detail"}]}`.
    /// Best effort with a 5 s deadline: the events in the log are the record, the webhook a
    /// notification, so a failure is logged and counted, never retried.
    func postAlerts(_ alerts: [AlertFired], node: String, to url: String, logger: Logger) async -> Bool {
        let body = JSONValue.object([
            "node": .string(node),
            "alerts": .array(
                alerts.map { alert in
                    .object([
                        "rule": .string(alert.rule), "scope": .string(alert.scope),
                        "state": .string(alert.firing ? "fired" : "cleared"), "value": .double(alert.value),
                        "action": .string(alert.action), "detail": .string(alert.detail),
                    ])
                }),
        ])
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: "application/json")
        headers.add(name: "user-agent", value: "bifrost-alerts")
        let call = UpstreamCall(url: url, headers: headers, body: Array(body.rendered().utf8), timeout: .seconds(5))
        do {
            let response = try await send(call, provider: false)
            _ = try? await response.body.collect(upTo: 64 << 10)
            guard (200..<300).contains(response.status) else {
                logger.warning(
                    "the alert webhook refused the alerts",
                    metadata: ["webhook.status": .stringConvertible(response.status)])
                return false
            }
            return true
        } catch {
            logger.warning("the alert webhook is unreachable", metadata: ["error": .string("\(error)")])
            return false
        }
    }
}
